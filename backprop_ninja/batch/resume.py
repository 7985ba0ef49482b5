"""Resuming: the key that says a submission is already graded, the commit log, and one batch per output folder.

key = sha256(submission bytes' sha256 + grader_version + the engine limits); see docs/batch.md.
"""
from __future__ import annotations

import fcntl
import glob
import hashlib
import json
import os
import stat
from pathlib import Path

import backprop_ninja
from backprop_ninja.batch.faults import is_environment_fault
from backprop_ninja.batch.records import CSV_NAME, RESULTS_NAME, read_record
from backprop_ninja.batch.submission import BatchError, Submission

PACKAGE_DIR = Path(backprop_ninja.__file__).resolve().parent
# The code whose change can change a grade; its hash is part of the resume key (docs/batch.md).
GRADING_CODE = ("units.py", "model.py", "grade", "sandboxed", "export/gradescope.py", "batch/worker.py")
NOT_GRADING_CODE = ("grade/cli.py",)
COMMIT_LOG = "commits.log"
READ_CHUNK_BYTES = 1 << 20


def grader_version() -> str:
    """`<package version>+<12 hex of the grading code's sha256>`; a new grader regrades everything."""
    digest = hashlib.sha256()
    for path in grading_code_files():
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"{backprop_ninja.__version__}+{digest.hexdigest()[:12]}"


def grading_code_files() -> list[Path]:
    files = []
    for name in GRADING_CODE:
        path = PACKAGE_DIR / name
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else [])
    skipped = {PACKAGE_DIR / name for name in NOT_GRADING_CODE}
    return [f for f in files if f not in skipped]


def _text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def content_sha256(path: Path) -> str:
    """The sha256 of a regular file's bytes. Anything else (missing, unreadable, a folder, a link, a pipe)
    hashes as what it is, without being followed, waited on or read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        return _text_sha256(f"unreadable: {error}")
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return _text_sha256("not a regular file")
    with os.fdopen(fd, "rb") as handle:
        digest = hashlib.sha256()
        while chunk := handle.read(READ_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def resume_key(content_hash: str, version: str, limits: dict) -> str:
    limits_text = json.dumps(limits, sort_keys=True, default=str)
    return hashlib.sha256(f"{content_hash}\n{version}\n{limits_text}".encode()).hexdigest()


def key_of(sub: Submission, version: str, limits: dict) -> tuple[str, str]:
    """(resume key, content hash). A refused submission is never read: its hash is that of the reason."""
    content_hash = _text_sha256(f"refused: {sub.refused}") if sub.refused else content_sha256(sub.path)
    return resume_key(content_hash, version, limits), content_hash


def already_done(out_dir: Path, sub: Submission, key: str, retry_failed: bool) -> bool:
    record = read_record(out_dir / sub.student_id / RESULTS_NAME)
    if record is None or record.get("key") != key or is_environment_fault(record):  # the machine's: grade again
        return False
    return not (retry_failed and record.get("error"))


class exclusive_lock:
    """One batch per output folder at a time; the kernel drops the lock when the holder dies, even by SIGKILL."""

    def __init__(self, path: Path, out_dir: Path):
        self.path, self.out_dir = path, out_dir

    def __enter__(self):
        self.handle = open(self.path, "w")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            self.handle.close()
            raise BatchError(f"Another batch is writing to {self.out_dir}; wait for it or choose another --out.") \
                from error
        return self

    def __exit__(self, *exc):
        self.handle.close()


def log_commit(state: Path, student_id: str, key: str, run_id: str) -> None:
    """One line per result written; one write() on an O_APPEND file, so a kill never leaves half a line."""
    fd = os.open(state / COMMIT_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{student_id}\t{key}\t{run_id}\n".encode())
    finally:
        os.close(fd)


def recover_commit_log(state: Path, out_dir: Path, subs: list[Submission]) -> None:
    """A run killed between writing a result and logging it left a result without its line: add the line."""
    try:
        logged = set((state / COMMIT_LOG).read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        logged = set()
    for sub in subs:
        record = read_record(out_dir / sub.student_id / RESULTS_NAME)
        if record and f"{sub.student_id}\t{record['key']}\t{record['run_id']}" not in logged:
            log_commit(state, sub.student_id, record["key"], record["run_id"])


def remove_partial_files(out_dir: Path, student_ids: list[str] | None = None) -> None:
    """Temp files of a run that was killed mid-write; they were never committed. With `student_ids` (a shard), only
    those students' files: another shard may be writing its own right now, and grades.csv is the merge's."""
    if student_ids is None:
        patterns = (f"*/.{RESULTS_NAME}.*.partial", f".{CSV_NAME}.*.partial")
    else:
        patterns = tuple(f"{glob.escape(student)}/.{RESULTS_NAME}.*.partial" for student in student_ids)
    for pattern in patterns:
        for partial in out_dir.glob(pattern):
            partial.unlink(missing_ok=True)
