"""The spawner: forks a fresh worker per request of the grader, kills workers when told, never runs student code.

Control protocol (the grader writes, on the control socket):
    b"S"             start a worker; the answer is its pid (ASCII) with the grader's end of a new
                     socket pair attached (SCM_RIGHTS)
    b"K" + 8 bytes   SIGKILL the worker with that pid (big-endian) and its process group
    b"Q", or EOF     kill every worker and exit

Isolated, the spawner is PID 1 of a fresh PID namespace (host.py): when it exits, the kernel kills
every process left in it. Unisolated, it is the grader's own child and kills its workers itself.
"""
from __future__ import annotations

import os
import signal
import socket
import struct
import sys
import tempfile
from dataclasses import dataclass

from . import confine
from .wire import recv_exactly

PID = struct.Struct(">q")


@dataclass(frozen=True)
class WorkerLimits:
    memory_bytes: int
    cpu_seconds: int
    file_bytes: int = 64 << 20


def spawner_loop(control: socket.socket, serve, limits: WorkerLimits, workdir: str, isolated: bool) -> int:
    """`serve(sock)` is what a worker runs once confined."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the grader decides when we stop
    workers: set[int] = set()
    while True:
        try:
            command = control.recv(1)
        except OSError:
            command = b""
        _reap(workers)
        if command == b"S":
            pid, grader_end = _start_worker(control, serve, limits, workdir, isolated)
            workers.add(pid)
            socket.send_fds(control, [str(pid).encode()], [grader_end.fileno()])
            grader_end.close()
        elif command == b"K":
            raw = recv_exactly(control, PID.size)
            if raw is None:
                break
            pid = PID.unpack(raw)[0]
            if pid in workers:
                _kill(pid)
        else:  # "Q" or the grader is gone
            break
    for pid in workers:
        _kill(pid)
    return 0


def fork_child(run, *to_close, fork=os.fork) -> int:
    """Fork (with `fork`); the child closes `to_close`, runs `run()` and exits with its status: it never returns
    into the caller's code, whatever happens."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = fork()
    if pid == 0:
        status = 1
        try:
            for item in to_close:
                item.close()
            status = run()
        finally:
            os._exit(status)
    return pid


def _start_worker(control, serve, limits: WorkerLimits, workdir: str, isolated: bool):
    grader_end, worker_end = socket.socketpair()
    pid = fork_child(lambda: _worker_main(worker_end, serve, limits, workdir, isolated), control, grader_end)
    try:
        os.setpgid(pid, pid)  # also done by the worker: whichever runs first wins the race
    except OSError:
        pass
    worker_end.close()
    return pid, grader_end


def _worker_main(sock: socket.socket, serve, limits: WorkerLimits, workdir: str, isolated: bool) -> int:
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    confine.die_with_parent()
    close_other_fds(keep=sock.fileno())
    silence_stdio()
    os.chdir(tempfile.mkdtemp(dir=workdir))
    confine.apply_limits(limits.memory_bytes, limits.cpu_seconds, limits.file_bytes)
    if isolated:
        confine.drop_capabilities()
    single_threaded()
    if isolated or confine.seccomp_available():
        confine.forbid_processes_and_escapes()
    serve(sock)
    return 0


def single_threaded() -> None:
    """torch and numpy compute in this thread only: once seccomp is on, no thread can be made, and a library
    that would start its pool then fails (OpenBLAS by raising SIGINT)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)
    confine.single_threaded_blas()


def _kill(pid: int) -> None:
    for kill in (os.killpg, os.kill):  # the group first: it would hold anything the student started
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _reap(workers: set[int]) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        workers.discard(pid)


def silence_stdio() -> None:
    """Whatever the student prints goes nowhere: it must never reach, or slow down, the grader."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    sys.stdin = open(0, closefd=False)  # Python's streams may be pytest's or a terminal's: rebind them
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)


def close_other_fds(keep: int) -> None:
    """Drop every descriptor inherited (the grader's files, pytest's captures) but `keep`."""
    import resource

    os.closerange(3, keep)
    os.closerange(keep + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
