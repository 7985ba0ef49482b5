"""The sandbox host: the first process inside bwrap (started by grade/isolation.py). Never runs student code.

    python -S -s -m sandboxed.host CHANNEL_FD UID GID

It drops to UID/GID if it starts as root, imports torch once, then serves the grader over the
channel (frames, see wire.py):
    {"op": "box", "replays": [[name, ...], ...], "keep": KEY or null, "meta": {...}, "limits": {...},
     "tmp_bytes": N} with the replays' tensors as arrays; or {"op": "box", "kept": KEY, ...} without arrays
    for the replays last sent with "keep": KEY (the boxes of one draw of seeds share them)
        -> a fresh box: a child born in new user, mount, PID and IPC namespaces (one clone(2)) runs the
           spawner as PID 1 there, with a private /tmp and /dev/shm and /proc hidden; the answer is b"box"
           with the grader's end of the spawner's control socket attached (SCM_RIGHTS)
    EOF -> exit (bwrap then tears down everything, --die-with-parent covers a killed grader)
Before the first request it sends {"ready": true, "uid": ..., "gid": ...}.
"""
from __future__ import annotations

import functools
import os
import socket
import sys

# Every box and worker is a fork of this process, and each Python at-fork hook runs in every child, where the pages it
# touches must be copied: logging's, random's, concurrent.futures' and torch's cost about 1 ms of CPU a fork
# together (measured in forked children of a host), and a submission takes two forks. They are not registered
# here, before the imports that register them. Why none is needed: this process never starts a thread, so no lock
# those hooks re-create can be held when it forks; torch's (it sets up OpenMP again) is done by every worker, which
# sets its thread count itself (spawner.single_threaded); and random's state, the host's and not reseeded, is no
# secret of the grader's. threading's own hook is kept: it tells threading which thread the child runs.
_register_at_fork = os.register_at_fork


def _register_threading_hooks_only(**hooks) -> None:
    if all(getattr(hook, "__module__", None) == "threading" for hook in hooks.values()):
        _register_at_fork(**hooks)


os.register_at_fork = _register_threading_hooks_only

from . import confine, spawner  # noqa: E402  here, not in functions: once locked down, the kit's modules cannot be imported


def main(argv: list[str]) -> int:
    channel = socket.socket(fileno=int(argv[0]))
    uid, gid = int(argv[1]), int(argv[2])
    spawner.close_other_fds(keep=channel.fileno())
    if os.getuid() == 0:
        confine.drop_to_user(uid, gid)
    confine.set_dumpable(False)
    confine.die_with_parent()
    import torch

    from . import blocks, worker
    from .wire import encode_frame, read_frame_blocking

    blocks.single_threaded_torch()  # before any parallel work: an OpenMP pool that existed before fork() hangs
    confine.single_threaded_blas()  # once here: every worker forked from here inherits it
    torch.ones(8, 8) @ torch.ones(8, 8)  # reads /proc/cpuinfo now: workers will not see /proc
    blocks.lock_down()  # once, inherited by every box and worker forked from here
    confine.cheaper_forks()  # no gc.freeze() here: it hides objects from gc.get_objects(), which cells can call
    channel.sendall(encode_frame({"ready": True, "uid": os.getuid(), "gid": os.getgid()}))
    boxes: set[int] = set()
    kept_key, kept = None, ([], [])
    while True:
        frame = read_frame_blocking(channel)
        _reap(boxes)
        if frame is None:
            os._exit(0)  # no interpreter teardown (torch's takes a while); bwrap ends the rest
        header, arrays = frame
        if "kept" in header:
            if header["kept"] != kept_key:  # the grader's mistake: no box, and the grader says it could not open one
                socket.send_fds(channel, [b"not kept"], [])
                continue
            replays, copies = kept
        else:
            replays, offset = [], 0
            for names in header["replays"]:
                replays.append({name: torch.from_numpy(arrays[offset + i].copy()) for i, name in enumerate(names)})
                offset += len(names)
            # A second copy of each tensor, made once here for every box of the draw: a worker hands these out to
            # the cells first (worker.Session's copies) instead of cloning ~3 MB into fresh pages in every box.
            copies = [{name: tensor.clone() for name, tensor in replay.items()} for replay in replays]
            kept_key, kept = header.get("keep"), (replays, copies)  # boxes forked from here get copies on write
        serve = functools.partial(worker.serve, replays, worker.Meta.from_dict(header["meta"]), copies=copies)
        limits = spawner.WorkerLimits(**header["limits"])
        grader_end, spawner_end = socket.socketpair()
        tmp_bytes = int(header["tmp_bytes"])
        boxes.add(spawner.fork_child(lambda: _run_box(spawner_end, serve, limits, tmp_bytes), channel, grader_end,
                                     fork=confine.fork_into_fresh_namespaces))
        spawner_end.close()
        socket.send_fds(channel, [b"box"], [grader_end.fileno()])
        grader_end.close()


def _run_box(control: socket.socket, serve, limits, tmp_bytes: int) -> int:
    """PID 1 of the box's fresh namespaces: a private /tmp and /dev/shm, /proc hidden, then the spawner."""
    confine.die_with_parent()
    confine.mount_private_tmp("/tmp", tmp_bytes)
    if os.path.isdir("/dev/shm"):
        confine.mount_private_tmp("/dev/shm", tmp_bytes)
    confine.hide("/proc")
    return spawner.spawner_loop(control, serve, limits, "/tmp", isolated=True)


def _reap(children: set[int]) -> None:
    for pid in list(children):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            children.discard(pid)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
