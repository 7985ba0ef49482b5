"""Grade a whole class: `backprop-ninja grade FOLDER|ZIP --jobs N --out DIR`.

The main process stays light (no torch): it finds the submissions, skips those already graded by
this grader version, hands the rest to N warm worker processes, and is the only one that writes
results. Each worker imports the engine (and torch) once, loads the data once, then grades
submission after submission; the engine still runs every submission's student code in its own
forked child with its limits. See docs/batch.md for the layout rules, the resume key and the
exit codes.
"""
from __future__ import annotations

import csv
import fcntl
import hashlib
import importlib
import io
import json
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path

import backprop_ninja
from backprop_ninja.export.feedback import write_feedback
from backprop_ninja.grade.verdict import SubmissionResult

ASSIGNMENT = "backprop_ninja"          # the nbgrader assignment name: submitted/<student>/backprop_ninja/
RESULTS_NAME = "results.json"
CSV_NAME = "grades.csv"
STATE_DIR = ".batch"                   # inside --out: lock, commit log, worker log, unzipped input
RECORD_KEY = "backprop_ninja"          # results.json["extra_data"][RECORD_KEY] holds our record
DEFAULT_GRADER = "backprop_ninja.batch"  # module with warm_up() and grade(path, limits)
DEFAULT_WATCHDOG_SECONDS = 300.0       # a worker silent this long on one submission is killed (the engine
                                       # itself stops student code after 60 s; this catches a stuck engine)
EXIT_ALL_GRADED = 0
EXIT_BATCH_FAILED = 1
EXIT_SOME_NOT_GRADED = 3

PACKAGE_DIR = Path(backprop_ninja.__file__).resolve().parent
# The code whose change can change a grade; its hash is part of the resume key (docs/batch.md).
GRADING_CODE = ("units.py", "model.py", "grade", "export/gradescope.py")
NOT_GRADING_CODE = ("grade/cli.py",)


class BatchError(Exception):
    """The batch as a whole cannot run (bad input path, ambiguous ids, the engine will not start)."""


@dataclass(frozen=True)
class Submission:
    student_id: str
    path: Path          # the file the engine reads
    source: str         # where it came from, for people: a path, or "class.zip!alice.ipynb"


# ---------------------------------------------------------------- finding submissions

_SAFE_ID = re.compile(r"[^A-Za-z0-9._@+-]+")


def safe_student_id(raw: str) -> str:
    """A student id that is safe as a directory name: other characters become '_', no leading dot."""
    cleaned = _SAFE_ID.sub("_", raw.strip()).lstrip(".")
    return cleaned or "_"


def discover(source: Path, work_dir: Path, id_pattern: str | None = None) -> list[Submission]:
    """The submissions under `source`: an nbgrader course or submitted/ tree, a folder of notebooks, or a zip.

    `work_dir` is where a zip is unpacked. Raises BatchError when the input is not usable.
    """
    source = Path(source)
    pattern = re.compile(id_pattern) if id_pattern else None
    if pattern is not None and "student_id" not in pattern.groupindex:
        raise BatchError(f"--id-pattern {id_pattern!r} has no (?P<student_id>...) group; add one.")
    if source.is_file() and source.suffix.lower() == ".zip":
        folder = _unzip_notebooks(source, work_dir)
        found = _discover_folder(folder, pattern)
        found = [Submission(s.student_id, s.path, f"{source}!{s.path.relative_to(folder)}") for s in found]
    elif source.is_dir():
        found = _discover_folder(source, pattern)
    elif not source.exists():
        raise BatchError(f"{source} does not exist; give the folder or .zip file that holds the submissions.")
    else:
        raise BatchError(f"{source} is neither a folder nor a .zip file; give a folder of notebooks, "
                         f"an nbgrader course folder (with submitted/), or a zip of notebooks.")
    _refuse_duplicate_ids(found)
    if not found:
        raise BatchError(f"No notebooks (*.ipynb) found in {source}.")
    return sorted(found, key=lambda s: s.student_id)


def _discover_folder(folder: Path, pattern: re.Pattern | None) -> list[Submission]:
    if (folder / "submitted").is_dir():
        folder = folder / "submitted"
    student_dirs = [d for d in sorted(folder.iterdir()) if (d / ASSIGNMENT).is_dir()]
    if student_dirs:
        return [_nbgrader_submission(d) for d in student_dirs]
    found = []
    for notebook in sorted(folder.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in notebook.parts:
            continue
        raw_id = notebook.stem
        if pattern is not None:
            match = pattern.match(notebook.name)
            if match is None:
                print(f"batch: skipping {notebook.name}: it does not match --id-pattern", file=sys.stderr)
                continue
            raw_id = match.group("student_id")
        found.append(Submission(safe_student_id(raw_id), notebook, str(notebook)))
    return found


def _nbgrader_submission(student_dir: Path) -> Submission:
    """One student of an nbgrader submitted/ tree. Several notebooks: the one named like the assignment."""
    notebooks = sorted(p for p in (student_dir / ASSIGNMENT).glob("*.ipynb"))
    preferred = [p for p in notebooks if p.name == f"{ASSIGNMENT}.ipynb"]
    chosen = preferred[0] if preferred else (notebooks[0] if len(notebooks) == 1 else None)
    student = safe_student_id(student_dir.name)
    if chosen is None:
        # No notebook, or several and none named like the assignment: the row will say why.
        listed = ", ".join(p.name for p in notebooks) or "no .ipynb file"
        return Submission(student, student_dir / ASSIGNMENT, f"{student_dir / ASSIGNMENT} ({listed})")
    return Submission(student, chosen, str(chosen))


def _unzip_notebooks(archive: Path, work_dir: Path) -> Path:
    """Unpack the zip's .ipynb entries (and nothing else) under work_dir, keeping their folders."""
    target = work_dir / "unzipped"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            for entry in zf.infolist():
                parts = [p for p in Path(entry.filename).parts if p not in ("", ".", "..", "/")]
                if entry.is_dir() or not parts or not parts[-1].lower().endswith(".ipynb"):
                    continue
                if "__MACOSX" in parts:
                    continue
                dest = target.joinpath(*parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(entry) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
    except zipfile.BadZipFile as error:
        raise BatchError(f"{archive} is not a readable zip file ({error}).") from error
    return target


def _refuse_duplicate_ids(found: list[Submission]) -> None:
    seen: dict[str, Submission] = {}
    for sub in found:
        if sub.student_id in seen:
            raise BatchError(
                f"Two submissions have the student id {sub.student_id!r}: {seen[sub.student_id].source} and "
                f"{sub.source}. Rename one, or pass --id-pattern to take the id from another part of the name.")
        seen[sub.student_id] = sub


# ---------------------------------------------------------------- resume keys

def grader_version() -> str:
    """`<package version>+<12 hex of the grading code's sha256>`; a new grader regrades everything."""
    digest = hashlib.sha256()
    for path in _grading_code_files():
        digest.update(path.relative_to(PACKAGE_DIR).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"{backprop_ninja.__version__}+{digest.hexdigest()[:12]}"


def _grading_code_files() -> list[Path]:
    files = []
    for name in GRADING_CODE:
        path = PACKAGE_DIR / name
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else [])
    skipped = {PACKAGE_DIR / name for name in NOT_GRADING_CODE}
    return [f for f in files if f not in skipped]


def content_sha256(path: Path) -> str:
    """The submission's bytes' sha256; a missing or unreadable file hashes as its error text."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as error:
        return hashlib.sha256(f"unreadable: {error}".encode()).hexdigest()


def resume_key(content_hash: str, version: str, limits: dict) -> str:
    limits_text = json.dumps(limits, sort_keys=True, default=str)
    return hashlib.sha256(f"{content_hash}\n{version}\n{limits_text}".encode()).hexdigest()


# ---------------------------------------------------------------- results on disk

def write_json_atomically(path: Path, data: dict) -> None:
    """Temp file in the same folder, fsync, os.replace: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as temp:
            json.dump(data, temp, indent=1)
            os.fchmod(temp.fileno(), 0o644)  # mkstemp makes 0600; results are for the whole course staff
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def read_record(results_file: Path) -> dict | None:
    """Our record inside a results.json, or None if the file is absent, damaged or not ours."""
    try:
        data = json.loads(results_file.read_text(encoding="utf-8"))
        record = data["extra_data"][RECORD_KEY]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if isinstance(record, dict) else None


def make_record(sub: Submission, key: str, version: str, content_hash: str, run_id: str,
                result: dict, units: list) -> dict:
    """What we keep beside Gradescope's fields: enough to resume, and to build the CSV and the report."""
    verdicts = [{k: v for k, v in verdict.items() if k != "mismatch"} for verdict in result["verdicts"]]
    return {
        "student_id": sub.student_id, "source": sub.source, "submission_sha256": content_hash,
        "grader_version": version, "key": key, "run_id": run_id, "error": result.get("error"),
        "execution_time": result.get("execution_time", 0.0), "verdicts": verdicts,
        "units": [list(u) for u in units],
    }


def fault_result(reason: str, units: list, execution_time: float = 0.0) -> dict:
    """A SubmissionResult-shaped dict for a submission the batch could not grade: every unit 0."""
    return {
        "error": reason, "execution_time": execution_time,
        "verdicts": [{"unit": grade_id, "status": "crashed", "points": 0.0, "max_points": float(points),
                      "message": f"not graded: {reason}", "exact": None, "max_diff": None}
                     for grade_id, points in units],
    }


def fault_gradescope(reason: str, units: list, execution_time: float = 0.0) -> dict:
    """A valid Gradescope results.json saying the submission could not be graded, and why."""
    return {
        "score": 0.0, "execution_time": round(execution_time, 3),
        "output": f"This submission could not be graded: {reason}",
        "visibility": "visible", "stdout_visibility": "hidden",
        "tests": [{"name": grade_id, "score": 0.0, "max_score": float(points), "status": "failed",
                   "output": f"not graded: {reason}", "visibility": "visible"} for grade_id, points in units],
    }


# ---------------------------------------------------------------- the worker side

# Imported once by the forkserver, so every worker forks with torch and the engine already loaded.
PRELOAD = ("backprop_ninja.grade.engine", "backprop_ninja.export.gradescope")


def warm_up() -> list[tuple[str, float]]:
    """Import the engine (and torch), load the data once; return the units as (grade_id, max points)."""
    from backprop_ninja.grade import engine
    from backprop_ninja.units import UNITS

    for seed, n in engine.REPLAYS:  # cached by the engine: built once per worker, not per submission
        engine.replay_inputs(seed, n)
    return [(u.grade_id, float(u.points)) for u in UNITS]


def grade(path: str, limits: dict) -> tuple[dict, dict]:
    """Grade one notebook with the engine: (SubmissionResult as a dict, Gradescope results.json)."""
    from dataclasses import asdict

    from backprop_ninja.export.gradescope import to_gradescope
    from backprop_ninja.grade.engine import grade_notebook

    result = grade_notebook(path, **limits)
    return asdict(result), to_gradescope(result)


def _worker_main(conn, grader_module: str, log_path: str, limits: dict, environ: dict) -> None:
    from backprop_ninja.grade.sandbox import die_with_parent  # so a killed batch leaves no graders behind

    die_with_parent()
    # A forkserver is started once per main process and keeps the environment of that moment;
    # each batch's workers must see the environment of the batch that started them (the data path).
    os.environ.clear()
    os.environ.update(environ)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    # Student prints (from the engine's forked children) must not reach the terminal or our pipe.
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    try:
        grader = importlib.import_module(grader_module)
        units = grader.warm_up()
    except BaseException as error:  # noqa: BLE001 - reported to the main process, which stops the batch
        conn.send(("failed", f"{type(error).__name__}: {error}"))
        return
    conn.send(("ready", [list(u) for u in units]))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return  # the main process is gone
        if task is None:
            return
        student_id, path = task
        started = time.monotonic()
        try:
            result, gradescope = grader.grade(path, limits)
            conn.send(("done", student_id, result, gradescope))
        except BaseException as error:  # noqa: BLE001 - an engine bug is this submission's row, not a stop
            reason = f"the grader raised {type(error).__name__}: {error}"
            conn.send(("fault", student_id, reason, time.monotonic() - started))


# ---------------------------------------------------------------- the main side

class _Worker:
    def __init__(self, ctx, grader_module: str, log_path: Path, limits: dict):
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child_conn, grader_module, str(log_path), limits,
                                                                 dict(os.environ)),
                                   daemon=True, name="backprop-ninja-grader")
        self.process.start()
        child_conn.close()
        self.ready = False
        self.task: Submission | None = None
        self.started_at = 0.0

    def give(self, sub: Submission) -> None:
        self.task, self.started_at = sub, time.monotonic()
        self.conn.send((sub.student_id, str(sub.path)))

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()

    def death_note(self) -> str:
        self.process.join(timeout=1)
        code = self.process.exitcode
        if code is not None and code < 0:
            how = f"was killed by signal {signal.Signals(-code).name}"
        else:
            how = f"exited with code {code}"
        return f"the grader process {how} while grading this submission (out of memory, or a crash)"


@dataclass
class BatchSummary:
    graded: int = 0         # graded in this run
    skipped: int = 0        # already graded by this grader version
    failed: int = 0         # rows with a submission-level error (this run and earlier ones)
    total: int = 0
    seconds: float = 0.0
    csv_path: Path | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_NOT_GRADED if self.failed else EXIT_ALL_GRADED

    def line(self) -> str:
        return (f"graded {self.graded}, already done {self.skipped}, failed {self.failed} of {self.total} "
                f"submissions in {self.seconds:.1f} s -> {self.csv_path}")


def run_batch(source: Path, out_dir: Path, jobs: int | None = None, *, limits: dict | None = None,
              grader_module: str | None = None, start_method: str = "forkserver",
              watchdog_seconds: float = DEFAULT_WATCHDOG_SECONDS, id_pattern: str | None = None,
              retry_failed: bool = False, progress: bool = True) -> BatchSummary:
    """Grade every submission under `source` into `out_dir`; resumable. Raises BatchError if it cannot run."""
    started = time.monotonic()
    grader_module = grader_module or DEFAULT_GRADER
    out_dir = Path(out_dir)
    state = out_dir / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    limits = dict(limits or {})
    with _exclusive_lock(state / "lock", out_dir):
        _remove_partial_files(out_dir)
        subs = discover(Path(source), state, id_pattern)
        version = grader_version()
        run_id = uuid.uuid4().hex[:12]
        keys = {s.student_id: _key_of(s, version, limits) for s in subs}
        _recover_commit_log(state, out_dir, subs)
        todo = [s for s in subs if not _already_done(out_dir, s, keys[s.student_id][0], retry_failed)]
        summary = BatchSummary(skipped=len(subs) - len(todo), total=len(subs))

        def commit(sub: Submission, result: dict, gradescope: dict, units: list) -> None:
            key, content_hash = keys[sub.student_id]
            gradescope = dict(gradescope)
            gradescope["extra_data"] = dict(gradescope.get("extra_data") or {})
            gradescope["extra_data"][RECORD_KEY] = make_record(sub, key, version, content_hash, run_id,
                                                               result, units)
            # the feedback page first: once results.json exists, the submission counts as done
            write_feedback(SubmissionResult.from_dict(result), out_dir / sub.student_id)
            write_json_atomically(out_dir / sub.student_id / RESULTS_NAME, gradescope)
            _log_commit(state, sub.student_id, key, run_id)
            summary.graded += 1

        if todo:
            jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
            _grade_with_pool(todo, jobs, commit, grader_module, start_method, state / "workers.log",
                             limits, watchdog_seconds, progress, already=summary.skipped, total=len(subs))
        summary.csv_path = write_grades_csv(out_dir, subs)
        summary.failed = sum(1 for s in subs if (read_record(out_dir / s.student_id / RESULTS_NAME) or {})
                             .get("error"))
        summary.seconds = time.monotonic() - started
        return summary


def _key_of(sub: Submission, version: str, limits: dict) -> tuple[str, str]:
    content_hash = content_sha256(sub.path) if sub.path.is_file() else hashlib.sha256(
        f"not a file: {sub.source}".encode()).hexdigest()
    return resume_key(content_hash, version, limits), content_hash


def _already_done(out_dir: Path, sub: Submission, key: str, retry_failed: bool) -> bool:
    record = read_record(out_dir / sub.student_id / RESULTS_NAME)
    if record is None or record.get("key") != key:
        return False
    return not (retry_failed and record.get("error"))


class _exclusive_lock:
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


COMMIT_LOG = "commits.log"


def _log_commit(state: Path, student_id: str, key: str, run_id: str) -> None:
    """One line per result written; one write() on an O_APPEND file, so a kill never leaves half a line."""
    fd = os.open(state / COMMIT_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{student_id}\t{key}\t{run_id}\n".encode())
    finally:
        os.close(fd)


def _recover_commit_log(state: Path, out_dir: Path, subs: list[Submission]) -> None:
    """A run killed between writing a result and logging it left a result without its line: add the line."""
    try:
        logged = set((state / COMMIT_LOG).read_text(encoding="utf-8").splitlines())
    except FileNotFoundError:
        logged = set()
    for sub in subs:
        record = read_record(out_dir / sub.student_id / RESULTS_NAME)
        if record and f"{sub.student_id}\t{record['key']}\t{record['run_id']}" not in logged:
            _log_commit(state, sub.student_id, record["key"], record["run_id"])


def _remove_partial_files(out_dir: Path) -> None:
    """Temp files of a run that was killed mid-write; they were never committed."""
    for partial in out_dir.glob(f"*/.{RESULTS_NAME}.*.partial"):
        partial.unlink(missing_ok=True)


def _grade_with_pool(todo: list[Submission], jobs: int, commit, grader_module: str, start_method: str,
                     log_path: Path, limits: dict, watchdog_seconds: float, progress: bool,
                     already: int, total: int) -> None:
    from tqdm import tqdm

    bar = tqdm(total=total, initial=already, unit="nb", desc="grading", disable=not progress,
               file=sys.stderr, dynamic_ncols=True)
    pool = _Pool(jobs, grader_module, start_method, log_path, limits, watchdog_seconds, commit, bar)
    try:
        pool.grade_all(todo)
    finally:
        bar.close()
        pool.close()


class _Pool:
    """N warm workers; hands out submissions, commits what comes back, replaces workers that die or hang."""

    def __init__(self, jobs, grader_module, start_method, log_path, limits, watchdog_seconds, commit, bar):
        self.ctx = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            # Workers fork from a server that has already imported the engine (torch): fast starts and restarts.
            preload = getattr(importlib.import_module(grader_module), "PRELOAD", ())
            self.ctx.set_forkserver_preload([grader_module, *preload])
        self.grader_module, self.log_path, self.limits = grader_module, log_path, limits
        self.watchdog_seconds, self.commit, self.bar = watchdog_seconds, commit, bar
        self.units: list = []  # (grade_id, max points), from the first worker that is ready
        self.workers = [self._start() for _ in range(jobs)]

    def _start(self) -> _Worker:
        return _Worker(self.ctx, self.grader_module, self.log_path, self.limits)

    def grade_all(self, todo: list[Submission]) -> None:
        pending = list(reversed(todo))  # pop() from the end keeps the sorted order
        while pending or any(w.task for w in self.workers):
            for worker in self.workers:
                if worker.ready and worker.task is None and pending:
                    worker.give(pending.pop())
            ready = multiprocessing.connection.wait(
                [w.conn for w in self.workers] + [w.process.sentinel for w in self.workers], timeout=1.0)
            for index, worker in enumerate(self.workers):
                if worker.conn in ready or worker.process.sentinel in ready:
                    self._receive(index, worker)
                elif worker.task and time.monotonic() - worker.started_at > self.watchdog_seconds:
                    self._replace(index, f"grading took longer than {self.watchdog_seconds:.0f} s, so it was stopped")

    def _receive(self, index: int, worker: _Worker) -> None:
        try:
            message = worker.conn.recv() if worker.conn.poll() else None
        except (EOFError, OSError):
            message = None
        if message is None:
            if not worker.process.is_alive():
                if not worker.ready:
                    raise BatchError(f"A grader process died while starting ({worker.death_note()}); "
                                     f"see {self.log_path}")
                self._replace(index, worker.death_note())
            return
        kind = message[0]
        if kind == "failed":
            raise BatchError(f"The grader could not start: {message[1]}")
        if kind == "ready":
            worker.ready = True
            self.units = self.units or message[1]
            return
        sub, worker.task = worker.task, None
        if kind == "done":
            _, _, result, gradescope = message
            self.commit(sub, result, gradescope, self.units)
        else:  # "fault": the engine raised instead of returning a result
            _, _, reason, seconds = message
            self._commit_fault(sub, reason, seconds)
        self.bar.update(1)

    def _replace(self, index: int, reason: str) -> None:
        """Kill a worker (dead already, or hung) and start another; its submission becomes a row saying why."""
        worker = self.workers[index]
        worker.kill()
        if worker.task is not None:
            self._commit_fault(worker.task, reason, time.monotonic() - worker.started_at)
            self.bar.update(1)
        self.workers[index] = self._start()

    def _commit_fault(self, sub: Submission, reason: str, seconds: float) -> None:
        self.commit(sub, fault_result(reason, self.units, seconds), fault_gradescope(reason, self.units, seconds),
                    self.units)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        for worker in self.workers:
            worker.process.join(timeout=2)
            worker.kill()


# ---------------------------------------------------------------- grades.csv

def write_grades_csv(out_dir: Path, subs: list[Submission]) -> Path:
    """One row per student: each unit's points, total, max, each unit's status, and the submission error."""
    records = [(s, read_record(out_dir / s.student_id / RESULTS_NAME)) for s in subs]
    from backprop_ninja.export.csv_export import grades_table

    path = out_dir / CSV_NAME
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for row in grades_table([(s.student_id, s.source, r) for s, r in records]):
        writer.writerow(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as temp:
        temp.write(buffer.getvalue())
        os.fchmod(temp.fileno(), 0o644)
    os.replace(temp_name, path)
    return path


# ---------------------------------------------------------------- the CLI (called from grade/cli.py)

def add_batch_arguments(parser) -> None:
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="worker processes for a folder or zip (default: the number of CPUs)")
    parser.add_argument("--id-pattern", default=None, metavar="REGEX",
                        help="take the student id from each notebook's file name with this regular expression "
                             "and its (?P<student_id>...) group (default: the file name without .ipynb)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="regrade submissions whose earlier row says they could not be graded")


def run_from_args(args) -> int:
    """`backprop-ninja grade FOLDER|ZIP --out DIR [--jobs N]`, dispatched from grade/cli.py."""
    source = Path(getattr(args, "notebook", None) or args.path)
    if not getattr(args, "out", None):
        print(f"grade: {source} holds a whole class; say where the results go with --out DIR.", file=sys.stderr)
        return EXIT_BATCH_FAILED
    limits = {name: getattr(args, name) for name in ("unit_timeout", "total_timeout")
              if getattr(args, name, None) is not None}
    watchdog = max(DEFAULT_WATCHDOG_SECONDS, 2 * limits.get("total_timeout", 0))
    try:
        summary = run_batch(source, Path(args.out), getattr(args, "jobs", None), limits=limits,
                            watchdog_seconds=watchdog, id_pattern=getattr(args, "id_pattern", None),
                            retry_failed=getattr(args, "retry_failed", False))
    except BatchError as error:
        print(f"grade: {error}", file=sys.stderr)
        return EXIT_BATCH_FAILED
    except KeyboardInterrupt:
        print("grade: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    print(summary.line())
    return summary.exit_code


def is_batch_input(path) -> bool:
    path = Path(path)
    return path.is_dir() or path.suffix.lower() == ".zip"
