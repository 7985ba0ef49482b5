"""Running the grader's front ends on attacker notebooks, and finding what an attack left behind.

Every grader run is a subprocess of this test process, in a session of its own, with:
- the run's token in its environment (MARK_ENV), which the attack cells use to touch only this run's processes
  and which finds whatever they leave behind;
- a secret in its environment (SECRET_ENV), which must never reach a student;
- a private TMPDIR, which must be empty once the grader is done;
- a soft address-space cap (the machine is shared: a grader without its own limits must not eat it).

A Watch snapshots the processes before a run and, after it, reports the ones the run left: descendants of this
test process (it is made a child subreaper, so orphans stay its descendants), processes carrying the token
(environment or name), and processes of the sandbox uid started by this run. It only ever signals processes that
are this run's.
"""
from __future__ import annotations

import csv
import ctypes
import html
import json
import os
import resource
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from backprop_ninja import units

import security_attacks as attacks
from processes import Proc, cmdline, descendants, process, processes  # noqa: F401 (used here and by tests)

MARK = "bpx" + secrets.token_hex(6)   # 15 characters: fits a process name (/proc/<pid>/comm)
SECRET = "secret-" + secrets.token_hex(12)
SAFETY_AS_BYTES = 4 << 30             # soft RLIMIT_AS of every grader run (the hard limit is left alone)
LEFTOVER_GRACE_SECONDS = 10.0         # a grader's own processes may take this long to go after it ends
SLEEPERS_STRIKE_WITHIN = 4.0          # attack sleepers act AFTER_THE_GRADER s after the grader ended; wait this
UNIT_POINTS = {u.grade_id: float(u.points) for u in units.UNITS}
MAX_SCORE = sum(UNIT_POINTS.values())
PR_SET_CHILD_SUBREAPER = 36


def sandbox_uids() -> frozenset[int]:
    """The users student code runs as under a root grader: the grading boxes' and nbgrader's kernels'."""
    from backprop_ninja.grade.isolation import KERNEL_UID, SANDBOX_UID

    return frozenset({SANDBOX_UID, KERNEL_UID})


# ---------------------------------------------------------------- running the grader

@dataclass
class Run:
    args: list[str]
    returncode: int | None      # None: it was still running at the timeout (then killed)
    stdout: str
    stderr: str
    seconds: float
    tmpdir: Path

    def __repr__(self) -> str:
        return f"Run({' '.join(self.args[-6:])!r} -> {self.returncode} in {self.seconds:.1f} s)"

    @property
    def log(self) -> str:
        return f"`{' '.join(self.args)}` exited {self.returncode}:\n{(self.stdout + self.stderr)[-4000:]}"


def grader_env(tmpdir: Path, names_file: Path, **extra: str) -> dict[str, str]:
    tmpdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **extra, "TMPDIR": str(tmpdir), "BACKPROP_NINJA_NAMES": str(names_file)}
    env.pop("BACKPROP_NINJA_SUBMISSION", None)
    env[attacks.MARK_ENV] = MARK
    env[attacks.SECRET_ENV] = SECRET
    return env


def run(args: list[str], env: dict[str, str], *, cwd: Path, timeout: float,
        address_space: int | None = None) -> Run:
    """Run a command to its end (or kill its session at the timeout). address_space: a hard RLIMIT_AS for the
    whole run instead of the soft safety cap."""
    def limit():
        if address_space is None:
            hard = resource.getrlimit(resource.RLIMIT_AS)[1]
            soft = SAFETY_AS_BYTES if hard == resource.RLIM_INFINITY else min(SAFETY_AS_BYTES, hard)
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        else:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    # Output goes to files, not pipes: a process the run leaves behind may hold them open, and the run is over
    # when its own process ends, not when every copy of its stdout is closed.
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True, preexec_fn=limit)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the session we started
            proc.wait()
            code = None
        seconds = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return Run([str(a) for a in args], code, out.read(), err.read(), seconds, Path(env["TMPDIR"]))


def grade_cli(*args: str | Path, code: str = "any") -> list[str]:
    """`backprop-ninja grade ...` as a command line (the interpreter of this venv). The attacks here test the
    second line (the sandbox and the run-time blocks), which the allowlist would hide by refusing their cells
    before they run: so they are graded under `--code any` unless a test says otherwise
    (test_attacks_allowlist.py grades under the default)."""
    return [sys.executable, "-m", "backprop_ninja", "grade", *map(str, args), "--code", code]


# ---------------------------------------------------------------- processes

def carries_mark(proc: Proc) -> bool:
    if proc.comm == MARK:
        return True
    try:
        return MARK.encode() in Path(f"/proc/{proc.pid}/environ").read_bytes()
    except OSError:
        return False


def _kill(proc: Proc) -> None:
    """SIGKILL exactly this process: through a pidfd, once its start time shows the pid was not reused."""
    try:
        fd = os.pidfd_open(proc.pid)
    except OSError:
        return
    try:
        same = process(proc.pid)
        if same is not None and same.start == proc.start:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
    except OSError:
        pass
    finally:
        os.close(fd)


def _set_subreaper(on: bool) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)


class Watch:
    """What one run leaves behind: processes (by PID, by token, by sandbox uid) and files."""

    def __init__(self, files: list[str] = ()):
        table = processes()
        self.me = os.getpid()
        self.before = {(p.pid, p.start) for p in descendants(self.me, table)}
        # sandboxes this test process had already (an in-process grading's shared launcher) are not the run's
        self.sandboxed_before = {(p.pid, p.start) for p in table.values() if p.uid in sandbox_uids()}
        self.files = list(files)
        _set_subreaper(True)

    def _ours(self, table: dict[int, Proc]) -> list[Proc]:
        """Processes of this run still alive: new descendants of ours, and anything with the run's token."""
        self._reap(table)
        found = {p.pid: p for p in descendants(self.me, table) if (p.pid, p.start) not in self.before}
        found.update({p.pid: p for p in table.values() if p.pid != self.me and carries_mark(p)})
        return [p for p in found.values() if p.state not in ("Z", "X")]

    def _sandboxed(self, table: dict[int, Proc]) -> list[Proc]:
        """Live processes of the sandbox uid that this run started: below this process or below one with the
        token. (Other people's gradings on a shared machine have sandbox processes too; those are not ours.)"""
        found = []
        for proc in table.values():
            if proc.uid not in sandbox_uids() or proc.state in ("Z", "X") or (proc.pid, proc.start) in self.sandboxed_before:
                continue
            parent, steps = table.get(proc.ppid), 0
            while parent is not None and steps < 256:
                if parent.pid == self.me or carries_mark(parent):
                    found.append(proc)
                    break
                parent, steps = table.get(parent.ppid), steps + 1
        return found

    def _reap(self, table: dict[int, Proc]) -> None:
        """Orphans of this run that ended became our zombie children: collect them (never an older child)."""
        for proc in table.values():
            if proc.ppid == self.me and proc.state == "Z" and (proc.pid, proc.start) not in self.before:
                try:
                    os.waitpid(proc.pid, os.WNOHANG)
                except ChildProcessError:
                    pass

    def leftovers(self) -> list[str]:
        """Processes and files of the run that are still there after the grace period (which they may use up)."""
        deadline = time.monotonic() + LEFTOVER_GRACE_SECONDS
        while True:
            table = processes()
            procs = {p.pid: p for p in self._ours(table) + self._sandboxed(table)}
            files = [f for f in self.files if os.path.lexists(f)]
            if (not procs and not files) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        return [p.describe() for p in procs.values()] + [f"file {f}" for f in files]

    def close(self) -> None:
        """Kill this run's processes (only those: new descendants and token bearers), remove its files."""
        try:
            for _ in range(3):
                table = processes()
                ours = self._ours(table)
                if not ours:
                    break
                for proc in ours:
                    _kill(proc)
                time.sleep(0.2)
            self._reap(processes())
        finally:
            _set_subreaper(False)
            for f in self.files:
                if os.path.lexists(f):
                    os.unlink(f)


def watched(args: list[str], env: dict[str, str], *, cwd: Path, timeout: float, files: list[str] = (),
            address_space: int | None = None, sleepers: bool = False,
            when_done: Callable[[], None] | None = None) -> tuple[Run, list[str]]:
    """run() under a Watch: (the run, what it left behind). `files`: paths the run must not leave; `sleepers`: wait
    until the sleepers an attack left would have struck; `when_done`: called as soon as the run has ended."""
    watch = Watch(files)
    try:
        done = run(args, env, cwd=cwd, timeout=timeout, address_space=address_space)
        ended = time.monotonic()
        if when_done is not None:
            when_done()
        if sleepers:
            time.sleep(max(0.0, ended + SLEEPERS_STRIKE_WITHIN - time.monotonic()))
        return done, watch.leftovers()
    finally:
        watch.close()


# ---------------------------------------------------------------- results

def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def read_rows(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def statuses(results: dict) -> dict[str, str]:
    return {t["name"]: (t.get("extra_data") or {}).get("status", t.get("status")) for t in results["tests"]}


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` but the batch's own state: relative path -> bytes."""
    if not folder.is_dir():
        return {}
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and ".batch" not in p.relative_to(folder).parts}


def student_visible_text(files: dict[str, bytes]) -> str:
    """What students and staff read: every results.json, feedback page and grades.csv, decoded and unescaped."""
    parts = []
    for name, content in files.items():
        text = content.decode("utf-8", errors="replace")
        parts += [text, html.unescape(text)]
        if name.endswith(".json"):
            try:
                parts.append(json.dumps(json.loads(text), ensure_ascii=False))
            except ValueError:
                pass
    return "\n".join(parts)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


UNCLEAR = ("Traceback", "the grader raised", "was killed by signal", "grading took longer", "MemoryError")


def unclear(error: str) -> str | None:
    """Why a row's error does not tell the instructor what was wrong with the submission (None: it does)."""
    if not error.strip():
        return "the row has no error message"
    found = [marker for marker in UNCLEAR if marker in error]
    return f"the row's error is about the grader, not the submission ({found}): {error[:300]}" if found else None


def assert_nothing_left(run: Run, leftovers: list[str]) -> None:
    """No process or file of the run remains, and the grader's TMPDIR is empty."""
    assert not leftovers, "left behind:\n" + "\n".join(leftovers)
    left = sorted(p.name for p in run.tmpdir.iterdir()) if run.tmpdir.is_dir() else []
    assert not left, f"left in the grader's TMPDIR: {left}"
