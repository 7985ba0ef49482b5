"""Shards: one class graded by N independent runs (`grade CLASS --shard K/N --out OUT`), e.g. the tasks of a Slurm
job array, all writing into the same OUT; `backprop-ninja merge OUT` (batch/merge.py) then writes grades.csv.

- The slice: a student belongs to shard 1 + (the first 8 bytes of sha256(student id)) mod N. It depends on the id
  alone, so it is the same on every machine and a student added to the class later cannot move a classmate to
  another shard: every student folder is written by exactly one shard.
- The state of shard K of N lives in OUT/.batch/shards/K-of-N/ (its lock, commit log, workers' log, unpacked zip)
  next to a manifest, class.json: the whole class as that shard found it, and the resume keys of its own students.
  The merge reads the manifests to know the class and who is still missing.
- Locks: a shard holds OUT/.batch/lock shared and its own lock exclusively; a whole-class batch and a merge hold
  OUT/.batch/lock exclusively. So shards run side by side, never beside a whole-class run or a merge, and a shard
  started twice is refused. Shards that split the class differently (2/4 beside 1/3) are refused too.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from backprop_ninja.batch.records import write_json_atomically
from backprop_ninja.batch.submission import BatchError, Submission

SHARDS_DIR = "shards"                  # in OUT/.batch/
MANIFEST_NAME = "class.json"
_SHARD_TEXT = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
_STATE_NAME = re.compile(r"(\d+)-of-(\d+)")


@dataclass(frozen=True)
class Shard:
    index: int   # 1 .. count
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def folder_name(self) -> str:
        return f"{self.index}-of-{self.count}"

    def owns(self, student_id: str) -> bool:
        return shard_of(student_id, self.count) == self.index

    def select(self, subs: list[Submission]) -> list[Submission]:
        return [s for s in subs if self.owns(s.student_id)]


def shard_of(student_id: str, count: int) -> int:
    """The shard (1 .. count) that grades this student: a hash of the id, not Python's hash(), which is salted."""
    digest = hashlib.sha256(student_id.encode("utf-8")).digest()
    return 1 + int.from_bytes(digest[:8], "big") % count


def parse_shard(text: str) -> Shard:
    """`K/N` with 1 <= K <= N; anything else is an argparse error that says what a right value looks like."""
    match = _SHARD_TEXT.fullmatch(str(text))
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not K/N; give this run's shard number and the number of shards, e.g. --shard 2/8 "
            f"(K counts from 1 to N)")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the number of shards N must be at least 1")
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(
            f"{text!r}: K counts from 1 to N, so the {count} shards are 1/{count} to {count}/{count}")
    return Shard(index, count)


def state_dir(batch_state: Path, shard: Shard) -> Path:
    return batch_state / SHARDS_DIR / shard.folder_name


def _open_lock(path: Path):
    # Read and write access: where flock is emulated with POSIX locks (NFS), a shared lock needs a readable file.
    return open(path, "a+")


@contextmanager
def shard_locks(batch_state: Path, shard: Shard, out_dir: Path):
    """Held while a shard runs; raises BatchError naming what is in the way. The kernel (or the NFS server) drops
    the locks when the holder dies, even by SIGKILL."""
    class_lock = _open_lock(batch_state / "lock")
    own_lock = None
    try:
        try:
            fcntl.flock(class_lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise BatchError(f"A whole-class batch or a merge is using {out_dir}; run shard {shard} once it has "
                             f"finished.") from error
        own = state_dir(batch_state, shard)
        own.mkdir(parents=True, exist_ok=True)
        own_lock = _open_lock(own / "lock")
        try:
            fcntl.flock(own_lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise BatchError(f"Shard {shard} is already running into {out_dir} (was its job started twice?); "
                             f"wait for it to finish.") from error
        # Our lock is taken before we look, so of two shards of different N starting together one sees the other.
        busy = running_shards(batch_state, other_than=shard.count)
        if busy:
            raise BatchError(
                f"Shard {busy[0]} is running into {out_dir}, and this run is shard {shard}: shards that run at the "
                f"same time must split the class the same way (all K/{busy[0].count}); wait for it to finish.")
        yield own
    finally:
        if own_lock is not None:
            own_lock.close()
        class_lock.close()


def running_shards(batch_state: Path, other_than: int) -> list[Shard]:
    """The shards of another N whose lock someone holds right now. Shards of our own N are never probed: our probe
    would hold their lock for a moment, and one of them starting in that moment would be refused."""
    running = []
    for folder in sorted((batch_state / SHARDS_DIR).glob("*-of-*")):
        shard = _shard_of_folder(folder)
        lock = folder / "lock"
        if shard is None or shard.count == other_than or not lock.is_file():
            continue
        with _open_lock(lock) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                running.append(shard)
    return running


def _shard_of_folder(folder: Path) -> Shard | None:
    match = _STATE_NAME.fullmatch(folder.name)
    if match is None:
        return None
    index, count = int(match.group(1)), int(match.group(2))
    return Shard(index, count) if 1 <= index <= count else None


# ---------------------------------------------------------------- the manifest a shard leaves for the merge

def write_manifest(own_state: Path, shard: Shard, source: Path, class_subs: list[Submission],
                   keys: dict[str, str]) -> None:
    """Written (atomically) before grading starts, so a shard that dies still tells the merge who it was to grade."""
    write_json_atomically(own_state / MANIFEST_NAME, {
        "shard": str(shard),
        "source": str(source),
        "students": [{"student_id": s.student_id, "path": str(s.path), "source": s.source, "refused": s.refused}
                     for s in class_subs],
        "keys": keys,  # student id -> resume key, for this shard's students only
    })


@dataclass
class Manifest:
    shard: Shard
    source: str
    students: list[Submission]
    keys: dict[str, str]
    written_ns: int     # when it was written: the newest manifests tell the merge the current N


def read_manifests(batch_state: Path) -> tuple[list[Manifest], list[str]]:
    """(manifests, problems): a manifest that cannot be read is named, not fatal (its shard is run again)."""
    manifests, problems = [], []
    for folder in sorted((batch_state / SHARDS_DIR).glob("*-of-*")):
        shard, path = _shard_of_folder(folder), folder / MANIFEST_NAME
        if shard is None or not path.exists():
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            students = [Submission(s["student_id"], Path(s["path"]), s["source"], s.get("refused"))
                        for s in data["students"]]
            manifests.append(Manifest(shard, str(data["source"]), students, dict(data["keys"]),
                                      path.stat().st_mtime_ns))
        except (OSError, ValueError, KeyError, TypeError) as error:
            problems.append(f"{path} cannot be read ({type(error).__name__}: {error}); run shard {shard} again")
    return manifests, problems
