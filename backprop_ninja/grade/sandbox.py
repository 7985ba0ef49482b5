"""The grader's side of the processes that run student code: boxes, workers, and reading their records.

A box is one spawner (sandboxed/spawner.py) reached through its control socket; isolation.py makes
boxes (each a fresh PID namespace when isolated). Each worker talks to the grader over its own socket
pair (the spawner hands the grader its end with SCM_RIGHTS), so a worker that was killed mid-message
leaves nothing behind for the next one. The grader enforces every time limit itself, with select()
and a deadline, then has the spawner SIGKILL the worker: nothing the student does with signals can
stop that. A record from a worker is untrusted data: it is parsed (wire.py), never unpickled.
"""
from __future__ import annotations

import os
import select
import socket
import time

import numpy as np

from backprop_ninja.sandboxed.spawner import PID, WorkerLimits as Limits  # noqa: F401 (re-exported)
from backprop_ninja.sandboxed.wire import PREFIX, decode_frame, encode_frame, read_frame_blocking  # noqa: F401

MAX_HEADER_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = 1 << 28   # a worker's record larger than this is treated as garbage
SPAWN_TIMEOUT = 10.0


class WorkerFailure(Exception):
    """The worker did not answer: `kind` is "timeout" or "crashed"."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


class BoxUnavailable(RuntimeError):
    """A box or a worker could not be started: the machine's fault (no tasks left, the sandbox host died), never
    the student's, since no student code can reach the spawner or the host. The batch re-checks the machine and
    grades the submission again (docs/batch.md)."""


class FrameReader:
    """The grader's side: read frames from an untrusted worker, never waiting past a deadline."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = bytearray()
        self.max_payload: int | None = None  # set per request: what is left of the submission's answer budget

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
        if self.max_payload is not None and payload_len > self.max_payload:  # refused before it is read
            from backprop_ninja.grade.records import too_large

            raise too_large(payload_len, self.max_payload)
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

    def __init__(self, pid: int, sock: socket.socket, box: "Box"):
        self.pid = pid  # as the spawner sees it (isolated: inside the box's PID namespace)
        self.box = box
        self.sock = sock
        sock.setblocking(False)  # every wait goes through select() with a deadline
        self.reader = FrameReader(sock)
        self.seq = 0
        self.alive = True

    def request(self, header: dict, arrays: list[np.ndarray], deadline: float,
                max_payload: int | None = None) -> tuple[dict, list[np.ndarray]]:
        """Send one job and wait for its record. Records from any other pid, or for another job, are
        ignored (a student's fork may write to the socket too). Raises WorkerFailure, or records.TooLarge for a
        record whose answers would take more than `max_payload` bytes. The record itself is unchecked: see
        records.py."""
        self.seq += 1
        self._send(encode_frame(dict(header, seq=self.seq), arrays), deadline)
        self.reader.max_payload = max_payload
        while True:
            reply, reply_arrays = self.reader.read(deadline)
            if _is_int(reply.get("pid"), self.pid) and _is_int(reply.get("seq"), self.seq):
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
            self.box.kill_worker(self.pid)
            self.alive = False
        self.sock.close()


def _is_int(value, expected: int) -> bool:
    """`value == expected` for a JSON integer only (True == 1 in Python, and a forged record may say true)."""
    return type(value) is int and value == expected


def ask_for_socket(channel: socket.socket, request: bytes, what: str, detail=lambda: "") -> tuple[bytes, socket.socket]:
    """Send `request` and wait (at most SPAWN_TIMEOUT) for the answer with one socket attached (SCM_RIGHTS);
    BoxUnavailable saying what could not be done otherwise. `detail()` adds to that message (e.g. bwrap's stderr)."""
    try:
        channel.sendall(request)
        readable, _, _ = select.select([channel], [], [], SPAWN_TIMEOUT)
        if not readable:
            raise OSError("no answer")
        message, fds, _, _ = socket.recv_fds(channel, 64, 1)
    except OSError as error:
        raise BoxUnavailable(f"could not {what}: {error}{detail()}") from None
    if not fds:
        raise BoxUnavailable(f"could not {what}: no socket came back{detail()}")
    return message, socket.socket(fileno=fds[0])


class Box:
    """One spawner and the workers it started. Leaving it (close) ends them all."""

    def __init__(self, control: socket.socket, spawner_pid: int | None = None, on_close=None):
        self.control = control
        self.spawner_pid = spawner_pid  # set when the spawner is our own child (unisolated)
        self.on_close = on_close
        self.workers: list[Worker] = []

    def start_worker(self) -> "Worker":
        message, sock = ask_for_socket(self.control, b"S", "start a sandbox process")
        worker = Worker(int(message.decode()), sock, self)
        self.workers.append(worker)
        return worker

    def spawner_alive(self) -> bool:
        """Whether the spawner still holds its end of the control socket. It never writes unless asked, so a
        readable socket means it ended (the kernel closes its sockets before its workers die with it)."""
        try:
            readable, _, _ = select.select([self.control], [], [], 0)
            return not readable or self.control.recv(1, socket.MSG_PEEK) != b""
        except OSError:
            return False

    def kill_worker(self, pid: int) -> None:
        try:
            self.control.sendall(b"K" + PID.pack(pid))
        except OSError:
            pass  # the spawner is gone, and with it (isolated: the kernel; unisolated: close()) its workers

    def close(self) -> None:
        for worker in self.workers:
            worker.kill()
        try:
            self.control.sendall(b"Q")
        except OSError:
            pass
        self.control.close()
        if self.spawner_pid is not None:
            try:
                os.waitpid(self.spawner_pid, 0)
            except ChildProcessError:
                pass
        if self.on_close is not None:
            self.on_close()

    def __enter__(self) -> "Box":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
