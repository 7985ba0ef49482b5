"""The warm worker pool: N processes forked from a forkserver that has imported the grader once.

Each worker loads the grader module, calls its warm_up(limits), then grade(path, limits) per submission and sends
back the result; the main process (run.py) commits it. A worker that dies or stays silent past the watchdog
is replaced, and its submission becomes a row that says why.
"""
from __future__ import annotations

import importlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from pathlib import Path

from backprop_ninja.batch.faults import fault_gradescope, fault_result
from backprop_ninja.batch.submission import BatchError, Submission

DEFAULT_WATCHDOG_SECONDS = 300.0       # a worker silent this long on one submission is killed (the engine
                                       # itself stops student code after 60 s; this catches a stuck engine)


def _worker_main(conn, grader_module: str, log_path: str, limits: dict, environ: dict) -> None:
    from backprop_ninja.sandboxed.confine import die_with_parent  # so a killed batch leaves no graders behind

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
        units = grader.warm_up(limits)
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


def grade_with_pool(todo: list[Submission], jobs: int, commit, grader_module: str, start_method: str,
                    log_path: Path, limits: dict, watchdog_seconds: float, progress: bool,
                    already: int, total: int) -> None:
    """Grade `todo` with `jobs` workers, calling commit(sub, result, gradescope, units) for each, in this process.

    Refused submissions are not given to a worker; their rows are committed once the units are known."""
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
        self.isolation = ""    # as the graded results report it; a fault row after a crash says the same
        self.workers = [self._start() for _ in range(jobs)]

    def _start(self) -> _Worker:
        return _Worker(self.ctx, self.grader_module, self.log_path, self.limits)

    def grade_all(self, todo: list[Submission]) -> None:
        pending = [s for s in reversed(todo) if not s.refused]  # pop() from the end keeps the sorted order
        refused = [s for s in todo if s.refused]
        while pending or refused or any(w.task for w in self.workers):
            if refused and self.units:  # a row needs the units, which the first ready worker reports
                for sub in refused:
                    self._commit_fault(sub, sub.refused, 0.0, isolation="")  # none of it ran
                refused = []
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
            self.isolation = result.get("isolation") or self.isolation
            self._commit(sub, result, gradescope)
        else:  # "fault": the engine raised instead of returning a result
            _, _, reason, seconds = message
            self._commit_fault(sub, reason, seconds)

    def _replace(self, index: int, reason: str) -> None:
        """Kill a worker (dead already, or hung) and start another; its submission becomes a row saying why."""
        worker = self.workers[index]
        worker.kill()
        if worker.task is not None:
            self._commit_fault(worker.task, reason, time.monotonic() - worker.started_at)
        self.workers[index] = self._start()

    def _commit(self, sub: Submission, result: dict, gradescope: dict) -> None:
        self.commit(sub, result, gradescope, self.units)
        self.bar.update(1)

    def _commit_fault(self, sub: Submission, reason: str, seconds: float, isolation: str | None = None) -> None:
        isolation = self.isolation if isolation is None else isolation
        self._commit(sub, fault_result(reason, self.units, seconds, isolation),
                     fault_gradescope(reason, self.units, seconds))

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        for worker in self.workers:
            worker.process.join(timeout=2)
            worker.kill()


