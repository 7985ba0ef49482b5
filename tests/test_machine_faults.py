"""A box that cannot start is the machine's fault, never the student's (issue 13, item 3).

The engine raises MachineFault instead of giving verdicts when a box's spawner fails under a submission; the batch
then restarts the worker (a fresh sandbox, the canary again), grades the submission once more, and if the machine
fails it again, writes a row that says so, which the next run grades again.

This module is also the grader the batch's workers load in the batch tests below: the real one
(backprop_ninja.batch.worker), with a fault injected into the first box of chosen submissions, as many times as a
plan file says (the plan lives on disk, because the batch restarts its workers).
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest

from backprop_ninja import batch
from backprop_ninja.batch import worker as real_worker

PRELOAD = real_worker.PRELOAD
FAULT_PLAN_ENV = "MACHINE_FAULT_TEST_PLAN"  # a JSON file: {student id: boxes still to break}, and warm-ups to fail
WARM_UPS_AFTER_FAULT = "warm_ups_after_fault"  # in the plan: warm-ups that fail once a box was broken
WARM_UPS_TO_FAIL = "warm_ups_to_fail"
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "submitted"
CLASS = ("ada", "ben", "cleo")              # right, typical mistakes, blank
VICTIM = "ada"


# ---------------------------------------------------------------- the grader the workers load

def warm_up(limits=None):
    plan = _plan()
    if plan.get(WARM_UPS_TO_FAIL, 0) > 0:
        plan[WARM_UPS_TO_FAIL] -= 1
        _save_plan(plan)
        from backprop_ninja.grade.engine import EnvironmentProblem

        raise EnvironmentProblem("this machine cannot grade: the reference answers failed 29 of 29 units (test)")
    return real_worker.warm_up(limits)


def is_machine_fault(error):
    return real_worker.is_machine_fault(error)


def grade(path, limits):
    if _take_fault(Path(path).stem):
        _break_next_box(real_worker._launcher)
    return real_worker.grade(path, limits)


def _plan() -> dict:
    return json.loads(Path(os.environ[FAULT_PLAN_ENV]).read_text())


def _save_plan(plan: dict) -> None:
    Path(os.environ[FAULT_PLAN_ENV]).write_text(json.dumps(plan))


def _take_fault(student: str) -> bool:
    """Whether to break this grading's box; the warm-ups planned to fail after a fault start failing now."""
    plan = _plan()
    if plan.get(student, 0) <= 0:
        return False
    plan[student] -= 1
    plan[WARM_UPS_TO_FAIL] = plan.get(WARM_UPS_TO_FAIL, 0) + plan.pop(WARM_UPS_AFTER_FAULT, 0)
    _save_plan(plan)
    return True


def _break_next_box(launcher) -> None:
    """The next box opened has lost its spawner before the engine asks it for a worker, as when a fork fails
    for want of tasks: the request that follows fails for real, in the sandbox's own code."""
    real_open_box = launcher.open_box

    def open_box(*args, **kwargs):
        launcher.open_box = real_open_box
        box = real_open_box(*args, **kwargs)
        _end_spawner(box)
        return box

    launcher.open_box = open_box


def _end_spawner(box) -> None:
    """Tell the spawner to quit, and wait until it has (it kills its workers first, then closes its socket)."""
    import select

    box.control.sendall(b"Q")
    readable, _, _ = select.select([box.control], [], [], 30)
    assert readable, "the spawner did not quit"


# ---------------------------------------------------------------- the engine

@pytest.fixture
def right_notebook(tmp_path, names_file):
    from backprop_ninja.grade.canary import REFERENCE_CELLS
    from notebooks import write_submission

    return write_submission(tmp_path / "right.ipynb", dict(REFERENCE_CELLS))


@pytest.fixture
def launcher():
    """The tests' shared launcher, its canary passed already: no box of the canary's is opened under a test."""
    from backprop_ninja.grade import engine

    shared = engine.shared_launcher()
    engine.ensure_environment(shared, engine.limits_for(), *engine.timeouts())
    return shared


def test_a_box_whose_spawner_is_gone_raises_machine_fault_not_verdicts(right_notebook, launcher):
    from backprop_ninja.grade import engine

    _break_next_box(launcher)
    with pytest.raises(engine.MachineFault, match="start a sandbox process"):
        engine.grade_notebook(right_notebook, launcher=launcher)
    assert engine.grade_notebook(right_notebook, launcher=launcher).score == 32  # the next box is fine


def test_a_spawner_that_ends_under_a_running_unit_is_the_machines_fault(right_notebook, launcher, monkeypatch):
    """The last way a grading could blame the student: the worker dies because its spawner died, and no later
    unit asks for a new worker (so no failing start would tell)."""
    from backprop_ninja.grade import engine, sandbox

    real_request = sandbox.Worker.request
    calls = []

    def request(self, header, arrays, deadline, *budget, **named):
        calls.append(header.get("unit"))
        if len(calls) == 3:
            _end_spawner(self.box)
        return real_request(self, header, arrays, deadline, *budget, **named)

    monkeypatch.setattr(sandbox.Worker, "request", request)
    with pytest.raises(engine.MachineFault, match="spawner ended"):
        engine.grade_notebook(right_notebook, launcher=launcher)


def test_the_batch_grader_names_machine_faults_and_only_those():
    from backprop_ninja.grade import engine, isolation, sandbox

    assert is_machine_fault(engine.MachineFault("x")) and is_machine_fault(engine.EnvironmentProblem("x"))
    assert is_machine_fault(sandbox.BoxUnavailable("x")) and is_machine_fault(isolation.IsolationUnavailable("x"))
    assert not is_machine_fault(RuntimeError("engine bug")) and not is_machine_fault(ValueError("x"))


# ---------------------------------------------------------------- the batch

def _class_folder(root: Path) -> Path:
    folder = root / "class"
    folder.mkdir()
    for student in CLASS:
        shutil.copy(EXAMPLES / student / "backprop_ninja" / "backprop_ninja.ipynb", folder / f"{student}.ipynb")
    return folder


def _run(folder: Path, out: Path, plan_file: Path, plan: dict, monkeypatch, jobs: int = 2) -> batch.BatchSummary:
    plan_file.write_text(json.dumps(plan))
    monkeypatch.setenv(FAULT_PLAN_ENV, str(plan_file))
    return batch.run_batch(folder, out, jobs, grader_module="test_machine_faults", progress=False)


def _rows(out: Path) -> dict[str, dict]:
    with open(out / "grades.csv", newline="") as f:
        return {row["student_id"]: row for row in csv.DictReader(f)}


def _grades(row: dict) -> dict:
    """A row without its error and isolation: the points and statuses of every unit."""
    return {name: value for name, value in row.items() if name not in ("error", "isolation", "source")}


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, names_file):
    """The class graded on a healthy machine."""
    root = tmp_path_factory.mktemp("baseline")
    plan = root / "plan.json"
    plan.write_text("{}")
    os.environ[FAULT_PLAN_ENV] = str(plan)
    try:
        summary = batch.run_batch(_class_folder(root), root / "out", 2, grader_module="test_machine_faults",
                                  progress=False)
    finally:
        del os.environ[FAULT_PLAN_ENV]
    rows = _rows(root / "out")
    assert summary.failed == 0 and rows[VICTIM]["total"] == rows[VICTIM]["max"]
    return rows


def test_a_transient_box_failure_is_graded_again_to_full_points(tmp_path, baseline, monkeypatch):
    plan = tmp_path / "plan.json"

    summary = _run(_class_folder(tmp_path), tmp_path / "out", plan, {VICTIM: 1}, monkeypatch)

    assert json.loads(plan.read_text())[VICTIM] == 0  # the fault did happen
    rows = _rows(tmp_path / "out")
    assert rows[VICTIM]["error"] == "" and rows[VICTIM]["total"] == rows[VICTIM]["max"]
    assert {s: _grades(rows[s]) for s in CLASS} == {s: _grades(baseline[s]) for s in CLASS}
    assert (summary.graded, summary.failed, summary.environment, summary.exit_code) == (3, 0, 0, 0)


def test_a_persistent_box_failure_is_an_environment_row_that_the_next_run_grades(tmp_path, baseline, monkeypatch):
    folder, out, plan = _class_folder(tmp_path), tmp_path / "out", tmp_path / "plan.json"

    first = _run(folder, out, plan, {VICTIM: 2}, monkeypatch)

    rows = _rows(out)
    victim = rows[VICTIM]
    assert victim["total"] == "0" and victim["max"] == baseline[VICTIM]["max"]
    assert {victim[f"{unit}_status"] for unit in _units(victim)} == {batch.ENVIRONMENT_FAULT}
    assert "not the student's" in victim["error"] and "start a sandbox process" in victim["error"]
    assert "run the same grade command again" in victim["error"].lower()
    assert {s: _grades(rows[s]) for s in CLASS if s != VICTIM} == \
        {s: _grades(baseline[s]) for s in CLASS if s != VICTIM}
    assert (first.failed, first.environment, first.exit_code) == (1, 1, batch.EXIT_SOME_NOT_GRADED)
    assert "1 of them the machine's fault" in first.line()
    gradescope = json.loads((out / VICTIM / "results.json").read_text())
    assert gradescope["score"] == 0.0 and "not the student's" in gradescope["output"]

    second = _run(folder, out, plan, {}, monkeypatch)  # resume, without --retry-failed

    assert (second.graded, second.skipped, second.failed, second.environment) == (1, 2, 0, 0)
    assert _grades(_rows(out)[VICTIM]) == _grades(baseline[VICTIM])


def _units(row: dict) -> list[str]:
    return [name[:-len("_status")] for name in row if name.endswith("_status")]


def test_a_students_own_fault_row_is_still_final_and_an_environment_row_is_not(tmp_path):
    from backprop_ninja.batch import faults, resume

    sub = batch.Submission("alice", tmp_path / "alice.ipynb", "alice.ipynb")
    units = [("ex1_probs", 1.0)]
    for environment, done in ((False, True), (True, False)):
        result = faults.fault_result("why", units, environment=environment)
        record = batch.make_record(sub, "key", "v", "sha", "run", result, units)
        batch.write_json_atomically(tmp_path / "alice" / "results.json", {"extra_data": {batch.RECORD_KEY: record}})
        assert resume.already_done(tmp_path, sub, "key", retry_failed=False) is done
        assert batch.is_environment_fault(record) is environment


def test_a_canary_failing_mid_batch_is_waited_out_not_fatal(tmp_path, baseline, monkeypatch):
    """The replacement worker's warm-up (the canary) fails twice while the machine is unwell: the batch does not
    stop, it warms the worker up again a little later and grades the victim then."""
    monkeypatch.setattr(batch.pool, "RESTART_DELAYS", (0.1, 0.1, 0.1))
    plan = tmp_path / "plan.json"

    summary = _run(_class_folder(tmp_path), tmp_path / "out", plan, {VICTIM: 1, WARM_UPS_AFTER_FAULT: 2},
                   monkeypatch)

    assert json.loads(plan.read_text()) == {VICTIM: 0, WARM_UPS_TO_FAIL: 0}
    rows = _rows(tmp_path / "out")
    assert {s: _grades(rows[s]) for s in CLASS} == {s: _grades(baseline[s]) for s in CLASS}
    assert (summary.failed, summary.exit_code) == (0, 0)


def test_a_machine_that_stays_unwell_gives_environment_rows_then_a_rerun_grades_them(tmp_path, baseline,
                                                                                      monkeypatch):
    monkeypatch.setattr(batch.pool, "RESTART_DELAYS", (0.1, 0.1))
    folder, out, plan = _class_folder(tmp_path), tmp_path / "out", tmp_path / "plan.json"

    first = _run(folder, out, plan, {VICTIM: 1, WARM_UPS_AFTER_FAULT: 99}, monkeypatch, jobs=1)

    rows = _rows(out)
    assert all(rows[s]["total"] == "0" and "not the student's" in rows[s]["error"] for s in CLASS)
    assert (first.graded, first.failed, first.environment) == (3, 3, 3)

    second = _run(folder, out, plan, {}, monkeypatch, jobs=1)

    assert (second.graded, second.failed, second.environment) == (3, 0, 0)
    rows = _rows(out)
    assert {s: _grades(rows[s]) for s in CLASS} == {s: _grades(baseline[s]) for s in CLASS}
