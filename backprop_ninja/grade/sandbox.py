"""The processes that run student code, and the wire between them and the grader.

Process tree:

    grader (holds the reference gradients, once computed)
      └─ spawner: forked BEFORE the grader computes any reference gradient; it never runs student
         code, it only forks a fresh worker whenever the grader asks for one
           └─ worker: lowers its limits, gets its own process group, runs student code (replay.py)

Each worker talks to the grader over its own socket pair (the spawner hands the grader its end
with SCM_RIGHTS), so a worker that was killed mid-message leaves nothing behind for the next one.
The grader enforces every time limit itself, with select() and a deadline, then SIGKILLs the
worker's whole process group: nothing the student does with signals can stop that.

Wire format (both directions): 8 bytes (header length, payload length, big-endian), a JSON header,
then the raw bytes of the arrays the header lists (dtype, shape). Never pickle: a record from the
child is data the grader parses, not code it runs.
"""
from __future__ import annotations

import json
import os
import resource
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

PREFIX = struct.Struct(">II")
MAX_HEADER_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = 1 << 28   # a worker's record larger than this is treated as garbage
ALLOWED_DTYPES = ("float32", "float64", "int64")
SPAWN_TIMEOUT = 10.0


class WorkerFailure(Exception):
    """The worker did not answer: `kind` is "timeout" or "crashed"."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class Limits:
    memory_bytes: int      # RLIMIT_AS of a worker
    cpu_seconds: int       # RLIMIT_CPU of a worker: a backstop behind the grader's own deadlines
    file_bytes: int = 64 << 20  # RLIMIT_FSIZE: no filling the disk from the temp directory


# ---- wire format ----

def encode_frame(header: dict, arrays: list[np.ndarray] = ()) -> bytes:
    arrays = [np.asarray(a) for a in arrays]
    arrays = [a if a.flags.c_contiguous else a.copy(order="C") for a in arrays]  # keeps 0-d arrays 0-d
    header = dict(header, arrays=[{"dtype": a.dtype.name, "shape": list(a.shape)} for a in arrays])
    head = json.dumps(header).encode()
    payload = b"".join(a.tobytes() for a in arrays)
    return PREFIX.pack(len(head), len(payload)) + head + payload


def decode_frame(head: bytes, payload: bytes) -> tuple[dict, list[np.ndarray]]:
    """Parse a frame; ValueError if it is not one we could have sent."""
    try:
        header = json.loads(head)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"unreadable header: {error}") from None
    if not isinstance(header, dict) or not isinstance(header.get("arrays"), list):
        raise ValueError("header is not a frame header")
    arrays, offset = [], 0
    for spec in header["arrays"]:
        if not isinstance(spec, dict) or spec.get("dtype") not in ALLOWED_DTYPES:
            raise ValueError("bad array spec")
        shape = spec.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise ValueError("bad array shape")
        dtype = np.dtype(spec["dtype"])
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if offset + nbytes > len(payload):
            raise ValueError("payload shorter than its arrays")
        arrays.append(np.frombuffer(payload, dtype, nbytes // dtype.itemsize, offset).reshape(shape))
        offset += nbytes
    if offset != len(payload):
        raise ValueError("payload longer than its arrays")
    return header, arrays


def read_frame_blocking(sock: socket.socket) -> tuple[dict, list[np.ndarray]] | None:
    """The worker's side: wait for the grader's next frame (trusted); None when the grader is gone."""
    prefix = _recv_exactly(sock, PREFIX.size)
    if prefix is None:
        return None
    head_len, payload_len = PREFIX.unpack(prefix)
    head = _recv_exactly(sock, head_len)
    payload = _recv_exactly(sock, payload_len)
    if head is None or payload is None:
        return None
    return decode_frame(head, payload)


def _recv_exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class FrameReader:
    """The grader's side: read frames from an untrusted worker, never waiting past a deadline."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = bytearray()

    def read(self, deadline: float) -> tuple[dict, list[np.ndarray]]:
        while True:
            frame = self._take_frame()
            if frame is not None:
                return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerFailure("timeout", "no answer before the deadline")
            readable, _, _ = select.select([self.sock], [], [], remaining)
            if not readable:
                continue
            try:
                chunk = self.sock.recv(1 << 20)
            except BlockingIOError:
                continue
            except OSError as error:
                raise WorkerFailure("crashed", f"connection lost ({error})") from None
            if not chunk:
                raise WorkerFailure("crashed", "the process ended")
            self.buffer += chunk

    def _take_frame(self):
        if len(self.buffer) < PREFIX.size:
            return None
        head_len, payload_len = PREFIX.unpack_from(self.buffer)
        if head_len > MAX_HEADER_BYTES or payload_len > MAX_PAYLOAD_BYTES:
            raise WorkerFailure("crashed", "it wrote something that is not a grader record")
        end = PREFIX.size + head_len + payload_len
        if len(self.buffer) < end:
            return None
        head = bytes(self.buffer[PREFIX.size:PREFIX.size + head_len])
        payload = bytes(self.buffer[PREFIX.size + head_len:end])
        del self.buffer[:end]
        try:
            return decode_frame(head, payload)
        except ValueError:
            raise WorkerFailure("crashed", "it wrote something that is not a grader record") from None


# ---- processes ----

class Worker:
    """The grader's handle on one worker process."""

    def __init__(self, pid: int, sock: socket.socket):
        self.pid = pid
        self.sock = sock
        sock.setblocking(False)  # every wait goes through select() with a deadline
        self.reader = FrameReader(sock)
        self.seq = 0
        self.alive = True

    def request(self, header: dict, arrays: list[np.ndarray], deadline: float) -> tuple[dict, list[np.ndarray]]:
        """Send one job and wait for its record. Records from any other pid, or for another job, are
        ignored (a student's fork may write to the socket too). Raises WorkerFailure."""
        self.seq += 1
        self._send(encode_frame(dict(header, seq=self.seq), arrays), deadline)
        while True:
            reply, reply_arrays = self.reader.read(deadline)
            if reply.get("pid") == self.pid and reply.get("seq") == self.seq:
                return reply, reply_arrays

    def _send(self, data: bytes, deadline: float) -> None:
        """Send, but never wait past the deadline: a worker that stops reading must not hang us."""
        view = memoryview(data)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerFailure("timeout", "it stopped reading its jobs")
            _, writable, _ = select.select([], [self.sock], [], remaining)
            if not writable:
                continue
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                continue
            except OSError:
                raise WorkerFailure("crashed", "the process ended") from None
            view = view[sent:]

    def kill(self) -> None:
        if self.alive:
            for kill in (os.killpg, os.kill):  # the group first: it holds any process the student forked
                try:
                    kill(self.pid, signal.SIGKILL)
                except OSError:
                    pass
            self.alive = False
        self.sock.close()


class Sandbox:
    """Forks the spawner on creation. Use as a context manager: leaving it kills every worker."""

    def __init__(self, serve: Callable[[socket.socket], None], limits: Limits):
        self.limits = limits
        self.workdir = tempfile.mkdtemp(prefix="backprop-ninja-")
        self.workers: list[Worker] = []
        control, spawner_end = socket.socketpair()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the spawner: never returns into the grader's code
            status = 1
            try:
                control.close()
                status = _spawner_loop(spawner_end, serve, limits, self.workdir)
            finally:
                os._exit(status)
        spawner_end.close()
        self.spawner_pid = pid
        self.control = control

    def start_worker(self) -> Worker:
        try:
            self.control.sendall(b"S")
            readable, _, _ = select.select([self.control], [], [], SPAWN_TIMEOUT)
            if not readable:
                raise OSError("the spawner did not answer")
            message, fds, _, _ = socket.recv_fds(self.control, 64, 1)
        except OSError as error:
            raise RuntimeError(f"could not start a sandbox process: {error}") from None
        if not fds:
            raise RuntimeError("could not start a sandbox process: the spawner sent no socket")
        worker = Worker(int(message.decode()), socket.socket(fileno=fds[0]))
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        try:
            self.control.sendall(b"Q")
        except OSError:
            pass
        self.control.close()
        try:
            os.waitpid(self.spawner_pid, 0)
        except ChildProcessError:
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "Sandbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _spawner_loop(control: socket.socket, serve, limits: Limits, workdir: str) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the grader decides when we stop
    die_with_parent()
    while True:
        command = control.recv(1)
        _reap_finished_workers()
        if command != b"S":  # "Q" or the grader is gone
            return 0
        grader_end, worker_end = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                control.close()
                grader_end.close()
                status = _worker_main(worker_end, serve, limits, workdir)
            finally:
                os._exit(status)
        try:
            os.setpgid(pid, pid)  # also done by the worker: whichever runs first wins the race
        except OSError:
            pass
        worker_end.close()
        socket.send_fds(control, [str(pid).encode()], [grader_end.fileno()])
        grader_end.close()


def _reap_finished_workers() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _worker_main(sock: socket.socket, serve, limits: Limits, workdir: str) -> int:
    os.setpgid(0, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    die_with_parent()
    _close_other_fds(keep=sock.fileno())
    _silence_stdio()
    os.chdir(tempfile.mkdtemp(dir=workdir))
    apply_limits(limits)
    serve(sock)
    return 0


def apply_limits(limits: Limits) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _silence_stdio() -> None:
    """Whatever the student prints goes nowhere: it must never reach, or slow down, the grader."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    sys.stdin = open(0, closefd=False)  # Python's streams may be pytest's or a terminal's: rebind them
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False)


def _close_other_fds(keep: int) -> None:
    """Drop every descriptor inherited from the grader (its files, pytest's captures) but our socket."""
    os.closerange(3, keep)
    os.closerange(keep + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def die_with_parent() -> None:
    """Linux: get SIGKILL if our parent dies, so nothing outlives a grader that was killed."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        PR_SET_PDEATHSIG = 1
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
