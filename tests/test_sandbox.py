"""The box machinery on its own, unisolated: the wire format, the worker's environment, and the grader's control
over it. (tests/test_isolation.py checks the isolated boxes.)"""
from __future__ import annotations

import os
import resource
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from backprop_ninja.grade import isolation, sandbox
from backprop_ninja.grade.sandbox import WorkerFailure, decode_frame, encode_frame, read_frame_blocking

LIMITS = sandbox.Limits(memory_bytes=6 << 30, cpu_seconds=60)


def unisolated_box(serve):
    return isolation.UnisolatedLauncher("tests").open_box_serving(serve, LIMITS)


def test_frames_round_trip_arrays_exactly():
    arrays = [np.arange(6, dtype=np.float32).reshape(2, 3), np.array(2.5), np.zeros((0, 4)),
              np.array([[1, 2]], dtype=np.int64)]
    frame = encode_frame({"seq": 3, "name": "dW1"}, arrays)
    head_len, payload_len = sandbox.PREFIX.unpack_from(frame)
    header, decoded = decode_frame(frame[8:8 + head_len], frame[8 + head_len:])
    assert header["seq"] == 3 and header["name"] == "dW1"
    assert len(decoded) == len(arrays)
    for mine, theirs in zip(decoded, arrays):
        assert mine.dtype == theirs.dtype and mine.shape == theirs.shape and np.array_equal(mine, theirs)


@pytest.mark.parametrize("head, payload", [
    (b"{not json", b""),
    (b'{"arrays": [{"dtype": "object", "shape": [1]}]}', b"12345678"),
    (b'{"arrays": [{"dtype": "float64", "shape": [2]}]}', b"12345678"),        # too short
    (b'{"arrays": [{"dtype": "float64", "shape": [1]}]}', b"1234567812345678"),  # too long
    (b'["a list"]', b""),
])
def test_decode_rejects_what_we_never_send(head, payload):
    with pytest.raises(ValueError):
        decode_frame(head, payload)


def test_reader_gives_up_at_the_deadline_and_on_garbage():
    mine, theirs = socket.socketpair()
    with mine, theirs:
        with pytest.raises(WorkerFailure) as waited:
            sandbox.FrameReader(mine).read(time.monotonic() + 0.2)
        assert waited.value.kind == "timeout"
        theirs.sendall(b"\xff" * 16)
        with pytest.raises(WorkerFailure) as garbage:
            sandbox.FrameReader(mine).read(time.monotonic() + 5)
        assert garbage.value.kind == "crashed"


# ---- serve functions: each runs inside a worker ----

def describe_yourself(sock):
    header, _ = read_frame_blocking(sock)
    fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}"))
    print("nobody reads this")
    sock.sendall(encode_frame({
        "pid": os.getpid(), "seq": header["seq"], "pgid": os.getpgid(0), "cwd": os.getcwd(),
        "memory": resource.getrlimit(resource.RLIMIT_AS)[0], "stdout": os.readlink("/proc/self/fd/1"),
        "stdin": os.readlink("/proc/self/fd/0"), "fds": fds, "socket": sock.fileno(),
    }))
    read_frame_blocking(sock)


def try_to_fork_then_hang(sock):
    header, _ = read_frame_blocking(sock)
    try:
        child = os.fork()
    except OSError as error:
        child = f"fork failed: {error.strerror}"
    if child == 0:
        while True:
            time.sleep(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock.sendall(encode_frame({"pid": os.getpid(), "seq": header["seq"], "child": child}))
    read_frame_blocking(sock)
    while True:
        pass


def exit_abruptly(sock):
    read_frame_blocking(sock)
    os._exit(3)


def forge_then_answer(sock):
    header, _ = read_frame_blocking(sock)
    seq = header["seq"]
    sock.sendall(encode_frame({"pid": os.getpid() + 1, "seq": seq, "answer": "forged"}))
    sock.sendall(encode_frame({"pid": os.getpid(), "seq": seq + 7, "answer": "another job's"}))
    sock.sendall(encode_frame({"pid": os.getpid(), "seq": seq, "answer": "real"}))
    read_frame_blocking(sock)


def multiply_big_matrices(sock):
    header, _ = read_frame_blocking(sock)
    a = torch.randn(1500, 1500)
    total = float((a @ a).sum())
    sock.sendall(encode_frame({"pid": os.getpid(), "seq": header["seq"], "finite": bool(np.isfinite(total))}))
    read_frame_blocking(sock)


def start_a_thread_then_compute(sock):
    header, _ = read_frame_blocking(sock)
    try:
        threading.Thread(target=time.sleep, args=(0,)).start()
        thread = "started"
    except RuntimeError as error:
        thread = str(error)
    a, t = np.random.rand(600, 600), torch.randn(1500, 1500)
    sock.sendall(encode_frame({"pid": os.getpid(), "seq": header["seq"], "thread": thread,
                               "numpy": bool(np.isfinite((a @ a).sum())), "torch": bool((t @ t).isfinite().all())}))
    read_frame_blocking(sock)


def ask(worker, seconds=10.0):
    return worker.request({}, [], time.monotonic() + seconds)[0]


def gone(pid: int) -> bool:
    """The process no longer exists, or only as a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def wait_until_gone(pid: int) -> bool:
    for _ in range(100):  # polls for up to 10 s: killing is asynchronous
        if gone(pid):
            return True
        time.sleep(0.1)
    return False


# ---- tests ----

def test_worker_runs_in_its_own_group_and_temp_dir():
    with unisolated_box(describe_yourself) as box:
        worker = box.start_worker()
        facts = ask(worker)
        workdir = Path(facts["cwd"]).parent
    assert facts["pgid"] == facts["pid"] == worker.pid
    assert workdir.name.startswith("backprop-ninja-") and Path(facts["cwd"]) != Path.cwd()
    assert facts["memory"] == LIMITS.memory_bytes
    assert facts["stdout"] == facts["stdin"] == os.devnull
    assert facts["fds"] == [0, 1, 2, facts["socket"]]  # nothing inherited from the grader
    assert not workdir.exists()


def test_a_worker_cannot_fork_and_a_timeout_kills_it():
    with unisolated_box(try_to_fork_then_hang) as box:
        worker = box.start_worker()
        assert ask(worker)["child"] == "fork failed: Operation not permitted"  # seccomp, even unisolated
        with pytest.raises(WorkerFailure) as failure:
            worker.request({}, [], time.monotonic() + 0.5)
        assert failure.value.kind == "timeout"
        worker.kill()
        assert wait_until_gone(worker.pid)


def test_a_worker_that_exits_is_a_crash_and_the_next_one_starts_fresh():
    with unisolated_box(exit_abruptly) as box:
        first = box.start_worker()
        with pytest.raises(WorkerFailure) as failure:
            ask(first)
        assert failure.value.kind == "crashed"
        second = box.start_worker()
        assert second.pid != first.pid
        with pytest.raises(WorkerFailure):
            ask(second)


def test_records_from_other_pids_or_jobs_are_ignored():
    with unisolated_box(forge_then_answer) as box:
        assert ask(box.start_worker())["answer"] == "real"


def test_torch_works_in_a_worker_after_the_grader_used_threads():
    torch.set_num_threads(2)
    a = torch.randn(1500, 1500)
    (a @ a).sum()  # starts the OpenMP pool in this process
    torch.set_num_threads(1)  # what the engine does before forking
    with unisolated_box(multiply_big_matrices) as box:
        assert ask(box.start_worker(), seconds=30)["finite"] is True


def test_a_worker_cannot_start_a_thread_but_torch_and_numpy_still_compute():
    """seccomp denies clone: no thread (a new one would start with grad mode on), and numpy's and torch's thread
    pools, started in the grader before the fork, must not try to start again in the worker (OpenBLAS would
    raise SIGINT)."""
    a = np.random.rand(600, 600)
    a @ a  # starts OpenBLAS's pool in this process
    torch.set_num_threads(1)  # what the engine does before forking
    with unisolated_box(start_a_thread_then_compute) as box:
        facts = ask(box.start_worker(), seconds=30)
    assert facts["thread"] == "can't start new thread"
    assert facts["numpy"] is True and facts["torch"] is True


def read_nothing(sock):
    while True:
        time.sleep(1)


def test_a_worker_that_stops_reading_cannot_hang_the_grader():
    with unisolated_box(read_nothing) as box:
        worker = box.start_worker()
        big = np.zeros(4 << 20)  # far more than a socket buffer holds
        with pytest.raises(WorkerFailure) as failure:
            worker.request({}, [big], time.monotonic() + 1.0)
        assert failure.value.kind == "timeout"


@pytest.mark.parametrize("spoil", ["W1.add_(1.0)", "W1[0].zero_()", "W1 = W1 * 0", "del W1"])
def test_a_cell_that_changes_a_replay_tensor_does_not_change_it_for_the_next(names_file, spoil):
    # The worker gives a cell the same copy again when no cell changed it (Session._replay_variables): an in-place
    # change, through a view too, or a new binding, must still bring a fresh copy for the next cell.
    from backprop_ninja.grade import engine
    from backprop_ninja.sandboxed import worker as worker_side

    replay = engine.replay_inputs(engine.REPLAYS[1][0], 32).values
    session = worker_side.Session([replay], worker_side.Meta.from_dict(engine.worker_meta()))
    job = {"unit": "ex1_probs", "answer": "dprobs", "exercise": 1, "mode": "graded", "upstream": [[]], "new": [[]]}
    copies = []
    for source in ("dprobs = W1 * 1", "dprobs = W1 * 1", spoil + "\ndprobs = torch.zeros(1)", "dprobs = W1 * 1"):
        with torch.no_grad():  # as in a worker, where grad mode is off (and this process's is left as it was)
            record, answers = session.run({**job, "source": source}, [])
        assert record["outcomes"][0]["kind"] == "answer", record
        copies.append(session.namespaces[0].get("W1"))
        if source == "dprobs = W1 * 1":
            assert np.array_equal(answers[0], replay["W1"].double().numpy())
    assert copies[0] is copies[1]  # unchanged: given again, not cloned
    assert copies[3] is not copies[2] and copies[3] is not replay["W1"]


@pytest.mark.parametrize("spoil", ["W1.add_(1.0)", "W1[0].zero_()"])
def test_the_hosts_copies_are_handed_out_until_a_cell_changes_one(names_file, spoil):
    # The sandbox host clones each replay once per draw (host.py) and the worker hands those clones out first
    # instead of cloning its own; once a cell changes one in place, the next cell gets a fresh clone of the replay.
    from backprop_ninja.grade import engine
    from backprop_ninja.sandboxed import worker as worker_side

    replay = engine.replay_inputs(engine.REPLAYS[1][0], 32).values
    copies = [{name: tensor.clone() for name, tensor in replay.items()}]
    session = worker_side.Session([replay], worker_side.Meta.from_dict(engine.worker_meta()), copies)
    job = {"unit": "ex1_probs", "answer": "dprobs", "exercise": 1, "mode": "graded", "upstream": [[]], "new": [[]]}
    seen = []
    for source in ("dprobs = W1 * 1", spoil + "\ndprobs = W1 * 1", "dprobs = W1 * 1"):
        with torch.no_grad():
            record, answers = session.run({**job, "source": source}, [])
        assert record["outcomes"][0]["kind"] == "answer", record
        seen.append((session.namespaces[0]["W1"], answers[0]))
    assert seen[0][0] is copies[0]["W1"] and seen[1][0] is copies[0]["W1"]  # no clone until changed
    assert not np.array_equal(seen[1][1], replay["W1"].double().numpy())  # the cell saw its own change
    assert seen[2][0] is not copies[0]["W1"] and seen[2][0] is not replay["W1"]
    assert np.array_equal(seen[2][1], replay["W1"].double().numpy())  # the replay itself was never touched


def test_a_cell_that_changes_its_upstream_gradient_does_not_change_it_for_the_next(names_file):
    from backprop_ninja.grade import engine
    from backprop_ninja.sandboxed import worker as worker_side

    replay = engine.replay_inputs(engine.REPLAYS[1][0], 32).values
    session = worker_side.Session([replay], worker_side.Meta.from_dict(engine.worker_meta()))
    upstream = np.random.default_rng(0).standard_normal(tuple(replay["logits"].shape)).astype(np.float32)
    job = {"unit": "ex1_probs", "answer": "dprobs", "exercise": 1, "mode": "graded",
           "upstream": [["dlogprobs"]], "new": [["dlogprobs"]]}
    answers = []
    for k, source in enumerate(["dprobs = dlogprobs * 1", "dlogprobs.mul_(0)\ndprobs = dlogprobs * 1",
                                "dlogprobs[0] = 5\ndprobs = dlogprobs * 1", "dprobs = dlogprobs * 1"]):
        with torch.no_grad():
            record, got = session.run({**job, "source": source, "new": job["new"] if k == 0 else [[]]},
                                      [upstream] if k == 0 else [])
        assert record["outcomes"][0]["kind"] == "answer", record
        answers.append(got[0])
    assert np.array_equal(answers[0], upstream) and np.array_equal(answers[3], upstream)
    assert not answers[1].any() and (answers[2][0] == 5).all()
