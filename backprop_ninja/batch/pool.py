"""The warm worker pool: N processes forked from a forkserver that has imported the grader once.

Each worker loads the grader module, calls its warm_up(limits), then grade(path, limits) per submission and sends
back the result; the main process (run.py) commits it. A worker that dies or stays silent past the watchdog
is replaced, and its submission becomes a row that says why. When the machine rather than the submission
failed, the submission is graded again by a fresh worker, and otherwise gets a row that says it was the machine.
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

from backprop_ninja.batch.faults import environment_reason, fault_gradescope, fault_result
from backprop_ninja.batch.submission import BatchError, Submission

DEFAULT_WATCHDOG_SECONDS = 300.0       # a worker silent this long on one submission is killed (the engine
                                       # itself stops student code after 60 s; this catches a stuck engine)
MACHINE_FAULT_ATTEMPTS = 2             # gradings of one submission the machine may fail before its row says so
RESTART_DELAYS = (2.0, 5.0, 15.0, 30.0)  # pauses before warming a worker up again after a warm-up failed mid-batch
                                         # (e.g. a box that used up the tasks is killed within its 10 s limit)


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
    except BaseException as error:  # noqa: BLE001 - reported to the main process, which decides what follows
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
            result, gradescope, *pages = grader.grade(path, limits)  # pages: {file name: text}, if the grader made them
            conn.send(("done", student_id, result, gradescope, pages[0] if pages else None))
        except BaseException as error:  # noqa: BLE001 - an engine bug is this submission's row, not a stop
            seconds = time.monotonic() - started
            if _is_machine_fault(grader, error):
                conn.send(("machine", student_id, f"{type(error).__name__}: {error}", seconds))
                return  # this worker's sandbox may be what broke: the pool starts a fresh worker
            conn.send(("fault", student_id, f"the grader raised {type(error).__name__}: {error}", seconds))


def _is_machine_fault(grader, error: BaseException) -> bool:
    """The grader module's own judgement (worker.is_machine_fault); a module without one has no machine faults."""
    check = getattr(grader, "is_machine_fault", None)
    try:
        return bool(check and check(error))
    except Exception:  # noqa: BLE001 - a judgement that fails leaves the error the submission's, as before
        return False


class _Worker:
    """One grader process, started when due (a restart after a failed warm-up waits a little first)."""

    def __init__(self, ctx, grader_module: str, log_path: Path, limits: dict, *, start_at: float = 0.0,
                 retry: Submission | None = None, failed_starts: int = 0):
        self.ctx, self.grader_module, self.log_path, self.limits = ctx, grader_module, log_path, limits
        self.start_at = start_at
        self.process = None
        self.conn = None
        self.ready = False
        self.task: Submission | None = None
        self.started_at = 0.0
        self.retry = retry                  # a submission the machine failed: graded first, once this one is warm
        self.failed_starts = failed_starts  # warm-ups that failed in a row before this one

    def start_if_due(self, now: float) -> None:
        if self.process is not None or now < self.start_at:
            return
        self.conn, child_conn = self.ctx.Pipe()
        self.process = self.ctx.Process(target=_worker_main, args=(child_conn, self.grader_module,
                                                                   str(self.log_path), self.limits,
                                                                   dict(os.environ)),
                                        daemon=True, name="backprop-ninja-grader")
        self.process.start()
        child_conn.close()

    def waitables(self) -> list:
        return [self.conn, self.process.sentinel] if self.process is not None else []

    def give(self, sub: Submission) -> None:
        self.task, self.started_at = sub, time.monotonic()
        self.conn.send((sub.student_id, str(sub.path)))

    def stop(self) -> None:
        try:
            if self.conn is not None:
                self.conn.send(None)
        except (OSError, ValueError):
            pass

    def kill(self) -> None:
        if self.process is None:
            return
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
    """N warm workers; hands out submissions, commits what comes back, replaces workers that die or hang.

    When the machine fails under a submission (the grader module says so: a box that cannot start, a sandbox host
    that died), the worker is replaced by a fresh one, whose warm-up runs the canary again on a fresh sandbox, and
    that worker grades the submission again once it is warm. A second failure gives the row of an environment
    fault. A warm-up that fails once the batch has started is tried again after a pause (RESTART_DELAYS); a slot
    whose warm-ups keep failing is given up, and when every slot is, the submissions left get environment rows."""

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
        self.pending: list[Submission] = []
        self.machine_faults: dict[str, int] = {}  # student id -> gradings the machine failed in this run
        self.workers = [self._start() for _ in range(jobs)]

    def _start(self, **state) -> _Worker:
        return _Worker(self.ctx, self.grader_module, self.log_path, self.limits, **state)

    def grade_all(self, todo: list[Submission]) -> None:
        self.pending = [s for s in reversed(todo) if not s.refused]  # pop() from the end keeps the sorted order
        refused = [s for s in todo if s.refused]
        while self.pending or refused or any(w.task or w.retry for w in self.workers):
            if refused and self.units:  # a row needs the units, which the first ready worker reports
                for sub in refused:
                    self._commit_fault(sub, sub.refused, 0.0, isolation="")  # none of it ran
                refused = []
            if not self.workers:  # every slot gave up: nothing can be graded on this machine now
                self._machine_cannot_grade()
                continue
            now = time.monotonic()
            for worker in self.workers:
                worker.start_if_due(now)
                self._feed(worker)
            ready = multiprocessing.connection.wait([x for w in self.workers for x in w.waitables()],
                                                    timeout=self._wait_seconds(now))
            for worker in list(self.workers):
                if worker.process is None:
                    continue
                if worker.conn in ready or worker.process.sentinel in ready:
                    self._receive(worker)
                elif worker.task and time.monotonic() - worker.started_at > self.watchdog_seconds:
                    self._replace(worker, f"grading took longer than {self.watchdog_seconds:.0f} s, so it was stopped")

    def _feed(self, worker: _Worker) -> None:
        """Give an idle, warm worker its next submission: the one the machine failed first, else the next in line."""
        if worker.ready and worker.task is None:
            if worker.retry is not None:
                worker.give(worker.retry)
                worker.retry = None
            elif self.pending:
                worker.give(self.pending.pop())

    def _wait_seconds(self, now: float) -> float:
        """At most a second; less when a delayed restart is due sooner."""
        due = [w.start_at - now for w in self.workers if w.process is None]
        return max(0.0, min([1.0, *due]))

    def _receive(self, worker: _Worker) -> None:
        try:
            message = worker.conn.recv() if worker.conn.poll() else None
        except (EOFError, OSError):
            message = None
        if message is None:
            if not worker.process.is_alive():
                if not worker.ready:
                    self._failed_start(worker, f"A grader process died while starting ({worker.death_note()}); "
                                               f"see {self.log_path}")
                    return
                self._replace(worker, worker.death_note())
            return
        kind = message[0]
        if kind == "failed":
            self._failed_start(worker, f"The grader could not start: {message[1]}")
            return
        if kind == "ready":
            worker.ready = True
            self.units = self.units or message[1]
            return
        sub, worker.task = worker.task, None
        if kind == "done":
            _, _, result, gradescope, pages = message
            self.isolation = result.get("isolation") or self.isolation
            self._feed(worker)  # the worker grades the next one while this one is written (fsync and all)
            self._commit(sub, result, gradescope, pages)
        elif kind == "machine":  # the machine, not the notebook, failed: a fresh worker grades it again
            _, _, detail, seconds = message
            self._machine_fault(worker, sub, detail, seconds)
        else:  # "fault": the engine raised instead of returning a result
            _, _, reason, seconds = message
            self._commit_fault(sub, reason, seconds)

    def _machine_fault(self, worker: _Worker, sub: Submission, detail: str, seconds: float) -> None:
        """Replace the worker (a fresh sandbox; its warm-up re-runs the canary) and have it grade `sub` again;
        if the machine already failed this submission once in this run, its row says it was the machine."""
        count = self.machine_faults[sub.student_id] = self.machine_faults.get(sub.student_id, 0) + 1
        if count >= MACHINE_FAULT_ATTEMPTS:
            self._commit_fault(sub, environment_reason(f"{count} times in a row: {detail}"), seconds,
                               environment=True)
            sub = None
        self._restart(worker, retry=sub)

    def _failed_start(self, worker: _Worker, why: str) -> None:
        """A warm-up failed (the canary, the sandbox, an import). Before any worker was ready, the machine cannot
        grade at all: stop the batch. Later it may be passing trouble: try again after a pause, then give up."""
        if not self.units:
            raise BatchError(why)
        worker.kill()
        index = self.workers.index(worker)
        if worker.failed_starts < len(RESTART_DELAYS):
            self.workers[index] = self._start(start_at=time.monotonic() + RESTART_DELAYS[worker.failed_starts],
                                              retry=worker.retry, failed_starts=worker.failed_starts + 1)
            return
        del self.workers[index]
        if worker.retry is not None:
            self._commit_fault(worker.retry, environment_reason(f"the machine failed it, and then {why}"), 0.0,
                               environment=True)

    def _machine_cannot_grade(self) -> None:
        """No worker could warm up again: every submission left gets an environment row (the next run grades it)."""
        reason = environment_reason(f"the grader stopped passing its warm-up check mid-batch; see {self.log_path}")
        while self.pending:
            self._commit_fault(self.pending.pop(), reason, 0.0, environment=True)

    def _replace(self, worker: _Worker, reason: str) -> None:
        """Kill a worker (dead already, or hung) and start another; its submission becomes a row saying why."""
        if worker.task is not None:
            self._commit_fault(worker.task, reason, time.monotonic() - worker.started_at)
        self._restart(worker, retry=worker.retry)

    def _restart(self, worker: _Worker, retry: Submission | None) -> None:
        worker.kill()
        self.workers[self.workers.index(worker)] = self._start(retry=retry)

    def _commit(self, sub: Submission, result: dict, gradescope: dict, pages: dict | None = None) -> None:
        self.commit(sub, result, gradescope, self.units, pages)
        self.bar.update(1)

    def _commit_fault(self, sub: Submission, reason: str, seconds: float, isolation: str | None = None,
                      environment: bool = False) -> None:
        isolation = self.isolation if isolation is None else isolation
        self._commit(sub, fault_result(reason, self.units, seconds, isolation, environment=environment),
                     fault_gradescope(reason, self.units, seconds))

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        for worker in self.workers:
            if worker.process is not None:
                worker.process.join(timeout=2)
            worker.kill()
