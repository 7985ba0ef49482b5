"""The isolation layer, seen from inside: what student code in an isolated box can see and do.

Each probe is an answer cell that gathers facts and raises them as JSON: the worker sends back an
exception's type and (cut) message, which is all a cell can ever tell the grader.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from backprop_ninja.grade import engine, isolation, sandbox
from backprop_ninja.grade.sandbox import WorkerFailure
from processes import descendants, process, processes

LIMITS = sandbox.Limits(memory_bytes=6 << 30, cpu_seconds=60)
KIT = Path(engine.__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def launcher(names_file):
    if isolation.unavailable_reason():
        pytest.fail(f"isolation is not available here: {isolation.unavailable_reason()}. {isolation.FIX}",
                    pytrace=False)
    with isolation.start(isolation.REQUIRED) as started:
        yield started


@pytest.fixture(scope="module")
def replay_values(names_file):
    return [engine.replay_inputs(engine.REPLAYS[0][0], 32).values]


def run_probe(box: sandbox.Box, code: str) -> dict:
    """Run `code` as an answer cell in a fresh worker of `box`; it must end by raising its facts as JSON."""
    worker = box.start_worker()
    header = {"unit": "ex1_probs", "answer": "dprobs", "exercise": 1, "mode": "graded", "source": code,
              "upstream": [[]], "new": [[]], "seq": 0}
    reply, _ = worker.request(header, [], time.monotonic() + 30)
    outcome = reply["outcomes"][0]
    assert outcome["kind"] == "raised" and outcome["type"] == "RuntimeError", outcome
    return json.loads(outcome["message"])


def probe(launcher, replay_values, code: str) -> dict:
    with launcher.open_box(replay_values, engine.worker_meta(), LIMITS) as box:
        return run_probe(box, code)


W1_SUM = "import json\nraise RuntimeError(json.dumps(float(W1.double().sum())))"


@pytest.mark.isolation
def test_the_boxes_of_one_draw_reuse_the_replays_the_host_kept(launcher, replay_values):
    other = [engine.replay_inputs(engine.REPLAYS[1][0], 32).values]
    sums = [float(values[0]["W1"].double().sum()) for values in (replay_values, other)]
    assert sums[0] != sums[1]
    seen = []
    for values, key in ((replay_values, ("draw", 1)), (other, ("draw", 1)), (other, ("draw", 2))):
        with launcher.open_box(values, engine.worker_meta(), LIMITS, key) as box:
            seen.append(run_probe(box, W1_SUM))
    # the second box was sent no arrays: it got the first draw's replays, whatever values came with the call
    assert seen == [sums[0], sums[0], sums[1]]
    launcher.host_keeps = repr(("draw", 3))  # what the host does not hold: no box, then a fresh start
    with pytest.raises(sandbox.BoxUnavailable):
        launcher.open_box(replay_values, engine.worker_meta(), LIMITS, ("draw", 3))
    with launcher.open_box(replay_values, engine.worker_meta(), LIMITS, ("draw", 3)) as box:
        assert run_probe(box, W1_SUM) == sums[0]


IDENTITY = """
import os, json, socket
try:
    socket.create_connection(("10.0.0.1", 80), timeout=1)
    network = "reached"
except OSError as error:
    network = type(error).__name__
raise RuntimeError(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(), "ppid": os.getppid(),
                               "proc": os.listdir("/proc"), "env": sorted(os.environ)[:12], "cwd": os.getcwd()[:20],
                               "network": network}))
"""


@pytest.mark.isolation
def test_student_code_runs_as_the_sandbox_user_alone_in_its_namespaces(launcher, replay_values):
    facts = probe(launcher, replay_values, IDENTITY)
    if os.geteuid() == 0:
        assert (facts["uid"], facts["gid"]) == (isolation.SANDBOX_UID, isolation.SANDBOX_GID)
    assert facts["ppid"] == 1 and facts["pid"] == 2  # the spawner is PID 1 of a namespace of its own
    assert facts["proc"] == []  # no other process to look at, not even through /proc
    assert facts["network"] != "reached"
    # only the sandbox's short fixed environment (bwrap adds PWD, Python LC_CTYPE): none of the grader's
    assert set(facts["env"]) <= {"HOME", "LANG", "LC_CTYPE", "MPLBACKEND", "MPLCONFIGDIR", "OMP_NUM_THREADS", "PATH",
                                 "PWD", "PYTHONDONTWRITEBYTECODE", "PYTHONPATH"}
    assert facts["cwd"].startswith("/tmp/")


VIEW = """
import json, os
visible = [path for path in PATHS if os.path.exists(path)]
try:
    open("/usr/planted", "w")
    usr = "writable"
except OSError as error:
    usr = type(error).__name__
raise RuntimeError(json.dumps({"visible": visible, "usr": usr}))
"""


@pytest.mark.isolation
def test_the_kit_the_course_and_the_output_are_not_visible(launcher, replay_values, names_file, tmp_path):
    classmate = tmp_path / "submitted" / "bob" / "backprop_ninja.ipynb"
    classmate.parent.mkdir(parents=True)
    classmate.write_text("{}")
    paths = [str(KIT / "backprop_ninja" / "units.py"), str(KIT / "source"), str(KIT / "solutions"),
             str(names_file), str(classmate), str(tmp_path), "/root", "/home", "/etc/passwd"]
    facts = probe(launcher, replay_values, f"PATHS = {paths!r}\n{VIEW}")
    assert facts["visible"] == []
    assert facts["usr"] in ("OSError", "PermissionError")  # read-only: EROFS


PROCESSES = """
import json, os, subprocess
tries = {}
for name, attempt in (("fork", os.fork), ("subprocess", lambda: subprocess.run(["/bin/true"])),
                      ("exec", lambda: os.execv("/bin/true", ["true"])), ("kill", lambda: os.kill(1, 9))):
    try:
        attempt()
        tries[name] = "worked"
    except OSError as error:
        tries[name] = error.errno
raise RuntimeError(json.dumps(tries))
"""


@pytest.mark.isolation
def test_student_code_cannot_start_processes_or_programs_or_signal_others(launcher, replay_values):
    tries = probe(launcher, replay_values, PROCESSES)
    assert tries == {"fork": 1, "subprocess": 1, "exec": 1, "kill": 1}  # EPERM each time


DESCRIPTORS = """
import json, os
open_fds = []
for fd in range(256):
    try:
        os.fstat(fd)
        open_fds.append(fd)
    except OSError:
        pass
raise RuntimeError(json.dumps(open_fds))
"""


@pytest.mark.isolation
def test_a_worker_inherits_no_descriptor_but_its_channel(launcher, replay_values):
    open_fds = probe(launcher, replay_values, DESCRIPTORS)
    assert open_fds[:3] == [0, 1, 2] and len(open_fds) == 4  # stdio (/dev/null) and the worker's socket


LEAVE_A_FILE = """
import json, os
seen = os.listdir("/tmp")
for place in ("/tmp", "/dev/shm"):
    with open(f"{place}/left-behind", "w") as f:
        f.write("x")
written = 0
try:  # past the private tmp's size cap
    for i in range(8):
        with open(f"/tmp/big{i}", "wb") as f:
            f.write(b"\\0" * (60 << 20))
        written += 60
except OSError as error:
    full = error.errno
raise RuntimeError(json.dumps({"seen": seen, "written_mb": written, "full": full}))
"""


@pytest.mark.isolation
def test_each_box_has_a_private_capped_tmp_that_the_next_box_never_sees(launcher, replay_values):
    first = probe(launcher, replay_values, LEAVE_A_FILE)
    second = probe(launcher, replay_values, LEAVE_A_FILE)
    for facts in (first, second):
        assert facts["full"] == 28 and facts["written_mb"] * (1 << 20) <= isolation.TMP_BYTES  # ENOSPC
        assert not any(name.startswith(("left-behind", "big")) for name in facts["seen"])
    assert not Path("/dev/shm/left-behind").exists() and not Path("/tmp/left-behind").exists()


def descendant_pids(pid: int) -> set[int]:
    """PIDs whose parent chain reaches `pid` (the host sees every namespace's processes)."""
    return {proc.pid for proc in descendants(pid, processes())}


def alive(pid: int) -> bool:
    proc = process(pid)
    return proc is not None and proc.state not in ("Z", "X")


@pytest.mark.isolation
def test_nothing_outlives_a_box_or_the_launcher(replay_values):
    with isolation.start(isolation.REQUIRED) as own:
        box = own.open_box(replay_values, engine.worker_meta(), LIMITS)
        worker = box.start_worker()
        header = {"unit": "ex1_probs", "answer": "dprobs", "exercise": 1, "mode": "graded", "seq": 0,
                  "source": "import time\nwhile True:\n    time.sleep(1)", "upstream": [[]], "new": [[]]}
        with pytest.raises(WorkerFailure):
            worker.request(header, [], time.monotonic() + 1.0)
        during = descendant_pids(own.process.pid)
        box.close()
        for _ in range(100):
            if len({pid for pid in descendant_pids(own.process.pid) if alive(pid)}) < len(during):
                break
            time.sleep(0.05)
        assert len({pid for pid in descendant_pids(own.process.pid) if alive(pid)}) < len(during)  # the box is gone
        everything = descendant_pids(own.process.pid) | {own.process.pid}
    for _ in range(100):
        if not any(alive(pid) for pid in everything):
            break
        time.sleep(0.05)
    assert not any(alive(pid) for pid in everything)


def test_without_bwrap_grading_a_class_stops_with_the_fix_and_self_study_goes_on(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no bwrap on PATH
    monkeypatch.delenv(isolation.NO_ISOLATION_ENV, raising=False)
    with pytest.raises(isolation.IsolationUnavailable) as stopped:
        isolation.start(isolation.REQUIRED)
    assert "bubblewrap" in str(stopped.value) and "--no-isolation" in str(stopped.value)
    monkeypatch.setattr(isolation, "_notified", False)
    with isolation.start(isolation.PREFERRED) as fallback:
        assert not fallback.isolated and fallback.description.startswith("none")
    assert "without isolation" in capsys.readouterr().err


@pytest.mark.isolation
def test_the_canary_blames_the_machine_not_the_student(launcher, names_file):
    with pytest.raises(engine.EnvironmentProblem) as problem:
        # an address-space cap far below what torch needs: even the reference answers fail
        engine.grade_notebook(KIT / "examples" / "submitted" / "ada" / "backprop_ninja" / "backprop_ninja.ipynb",
                              launcher=launcher, memory_limit_bytes=64 << 20)
    assert "reference answers" in str(problem.value) and "no student was graded" in str(problem.value)



def test_a_class_is_not_graded_unisolated_unless_asked(tmp_path):
    import subprocess
    import sys

    examples = KIT / "examples" / "submitted"
    env = dict(os.environ, PATH=str(tmp_path / "empty"))  # no bwrap on PATH
    env.pop(isolation.NO_ISOLATION_ENV, None)
    command = [sys.executable, "-m", "backprop_ninja", "grade", str(examples), "--jobs", "1"]
    stopped = subprocess.run(command + ["--out", str(tmp_path / "stopped")], env=env, capture_output=True,
                             text=True, timeout=300)
    assert stopped.returncode == 1 and "bubblewrap" in stopped.stderr and "--no-isolation" in stopped.stderr
    assert not (tmp_path / "stopped" / "grades.csv").exists()
    forced = subprocess.run(command + ["--out", str(tmp_path / "forced"), "--no-isolation"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert forced.returncode == 0, forced.stderr[-2000:]
    csv_text = (tmp_path / "forced" / "grades.csv").read_text()
    assert "none (--no-isolation)" in csv_text
    record = json.loads((tmp_path / "forced" / "ada" / "results.json").read_text())
    assert record["extra_data"]["isolation"] == "none (--no-isolation)"
