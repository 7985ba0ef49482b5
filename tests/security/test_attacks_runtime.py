"""The worker's run-time layer (issue 13, points 1 and 3): what stops autograd when the static allowlist is off.

Every notebook here is graded with code="any", so the allowlist refuses nothing and each cell really runs in a
box: no new thread can start (seccomp denies clone), grad mode cannot be turned back on, autograd's backward
kernels raise in the dispatcher, and the belt catches grad mode left on. Each attack is first shown to give
autograd's answer in an ordinary process, so that "earns nothing" proves the layer, not a broken attack.
"""
from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

import security_attacks as attacks
import security_harness as h
from backprop_ninja import units
from backprop_ninja.grade import engine
from fixtures.correct_cells import CORRECT_CELLS
from notebooks import write_submission

pytestmark = pytest.mark.isolation  # the layer is proven inside the real box

ROUTES = attacks.runtime_attacks()
ATEN_GRAD_MODE = ("ex1_logprobs", attacks.ATEN_GRAD_MODE, "torch.ops.aten.set_grad_enabled")
# The mixed notebook: right everywhere except these cells.
MIXED = {
    "ex1_logprobs": attacks.ATEN_GRAD_MODE,
    "ex1_probs": attacks.THREAD_BOMB,
    "ex1_counts": attacks.REACH_THE_WORKER,
    "ex2_logits": attacks.PRINTS_A_TENSOR,
    "ex3_hprebn": attacks.INSIDE_NO_GRAD,
}
POINTS = {u.grade_id: u.points for u in units.UNITS}


def by_unit(result) -> dict:
    return {v.unit: v for v in result.verdicts}


@pytest.fixture(scope="module")
def attacker(workdir, names_file) -> dict:
    notebook = write_submission(workdir / "runtime-attacker.ipynb", {k: cell for k, (cell, _, _) in ROUTES.items()})
    return by_unit(engine.grade_notebook(notebook, code="any"))


@pytest.fixture(scope="module")
def mixed(workdir, names_file) -> dict:
    notebook = write_submission(workdir / "runtime-mixed.ipynb", {**CORRECT_CELLS, **MIXED})
    return by_unit(engine.grade_notebook(notebook, code="any"))


# ---------------------------------------------------------------- the attacks are real

@pytest.mark.parametrize("unit, cell, var", [(unit, cell, var) for unit, (cell, var, _) in ROUTES.items()
                                             if cell is not attacks.THREAD_GRAD and cell is not attacks.THREAD_POOL]
                         + [(ATEN_GRAD_MODE[0], ATEN_GRAD_MODE[1], "logprobs")])
def test_each_route_gives_autograds_answer_outside_the_box(unit, cell, var):
    """In this (unblocked) process, with grad mode off as in a worker, the cell computes autograd's gradient.
    (The thread routes differ from these only in running the same walk in a new thread.)"""
    replay = engine.replay_inputs(2147483647, 32)
    engine.add_reference_gradients(replay)
    ns = {name: t.clone() for name, t in replay.values.items()}
    ns.update(torch=torch, F=F, n=32, dhpreact=replay.grads["hpreact"].float())
    before = torch.is_grad_enabled()
    torch.set_grad_enabled(False)
    try:
        exec(cell, ns)
    finally:
        torch.set_grad_enabled(before)
    expected = replay.grads[var].float()
    assert torch.allclose(ns["d" + var], expected, rtol=1e-4, atol=1e-6 * float(expected.abs().max()))


# ---------------------------------------------------------------- in the box they earn nothing

@pytest.mark.parametrize("unit", sorted(ROUTES))
def test_runtime_route_earns_nothing(attacker, unit):
    _, _, word = ROUTES[unit]
    verdict = attacker[unit]
    assert verdict.points == 0 and verdict.status in ("uses_autograd", "error"), (verdict.status, verdict.message)
    assert word in verdict.message, verdict.message


def test_the_attacker_earns_nothing_at_all(attacker):
    assert sum(v.points for v in attacker.values()) == 0


def test_aten_set_grad_enabled_earns_nothing(mixed):
    unit, _, word = ATEN_GRAD_MODE
    assert mixed[unit].status == "uses_autograd" and word in mixed[unit].message, mixed[unit].message


def test_a_thread_bomb_is_that_cells_error_and_harms_no_later_unit(mixed):
    bomb = mixed["ex1_probs"]
    assert bomb.status == "error" and "can't start new thread" in bomb.message, bomb.message
    harmed = {unit: (v.status, v.message) for unit, v in mixed.items() if unit not in MIXED and v.status != "ok"}
    assert not harmed, harmed


def test_nothing_of_the_worker_nor_ctypes_is_reachable(mixed):
    assert "reachable: []" in mixed["ex1_counts"].message, mixed["ex1_counts"].message


def test_printing_a_tensor_and_no_grad_are_honest(mixed):
    for unit in ("ex2_logits", "ex3_hprebn"):
        assert mixed[unit].status == "ok", (unit, mixed[unit].message)
    assert sum(v.points for v in mixed.values()) == sum(POINTS.values()) - sum(
        POINTS[u] for u in ("ex1_logprobs", "ex1_probs", "ex1_counts"))


def test_an_answer_that_carries_a_graph_is_autograd(workdir, names_file):
    """The belt: a right value that requires grad came out of autograd's machinery, whatever made it."""
    cell = ("dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0 / n\n"
            "dlogprobs = torch.tensor(dlogprobs.tolist(), **{'requires' + '_grad': True})\n")
    notebook = write_submission(workdir / "runtime-graph.ipynb", {"ex1_logprobs": cell})
    verdict = by_unit(engine.grade_notebook(notebook, code="any"))["ex1_logprobs"]
    assert verdict.status == "uses_autograd" and "requires grad" in verdict.message, verdict.message


# ---------------------------------------------------------------- a classmate in the same batch

def test_a_thread_bomb_costs_a_classmate_nothing(workdir, names_file):
    base = workdir / "runtime-batch"
    folder, out = base / "class", base / "out"
    folder.mkdir(parents=True)
    write_submission(folder / "mallory.ipynb", {u.grade_id: attacks.THREAD_BOMB for u in units.EXERCISE_1})
    write_submission(folder / "alice.ipynb", CORRECT_CELLS)
    args = [sys.executable, "-m", "backprop_ninja", "grade", str(folder), "--out", str(out), "--jobs", "2",
            "--code", "any"]
    run, leftovers = h.watched(args, h.grader_env(base / "tmp", names_file), cwd=base, timeout=300)
    assert run.returncode == 0, run.log
    alice, mallory = h.read_json(out / "alice" / "results.json"), h.read_json(out / "mallory" / "results.json")
    assert alice["score"] == h.MAX_SCORE, sorted(set(h.statuses(alice).values()))
    assert mallory["score"] == 0
    h.assert_nothing_left(run, leftovers)
