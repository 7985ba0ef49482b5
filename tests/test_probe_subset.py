"""The rule probe calls an answer right by luck only when, under random upstreams, it is a wrong combination of the
unit's shares (one left out, or a sign flipped); otherwise it says nothing (issue 14, point 7).

Each case runs cells written as a student would, in float32, the way the worker runs the probe: the earlier cells
with the true upstreams, the unit's cell once with them and once more with the probe's random ones.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from backprop_ninja import model, units
from backprop_ninja.grade import compare, engine, evidence, probe

DLOGITS = units.BY_ID["ex1_logits"]
ONE_HOT_MAX = "F.one_hot(logits.max(1).indices, num_classes=logits.shape[1])"


@pytest.fixture(scope="module")
def replay(names_file):
    made = engine.replay_inputs(*compare.NOTEBOOK_REPLAY)
    engine.add_reference_gradients(made)
    return made


def _namespace(replay, unit: units.Unit, earlier: dict[str, str]) -> dict:
    """A student's namespace just before `unit`'s cell: the replay's float32 values, the true upstreams, and what the
    earlier cells (grade_id -> source, run with their own true upstreams) left behind."""
    namespace = {"torch": torch, "F": F, "n": replay.n, **{k: v.clone() for k, v in replay.values.items()}}
    for grade_id, source in earlier.items():
        namespace.update({k: g.clone() for k, g in evidence.upstream_for(units.BY_ID[grade_id], replay).items()})
        exec(source, namespace)
    namespace.update({k: g.clone() for k, g in evidence.upstream_for(unit, replay).items()})
    return namespace


def _verdict(replay, unit: units.Unit, cell: str, earlier: dict[str, str] | None = None) -> str | None:
    """probe.luck on `cell`: run with the true upstreams, then with the probe's (in a copy of the same state)."""
    made = probe.make_probe(unit, replay)
    before = _namespace(replay, unit, earlier or {})
    on_true, on_probe = dict(before), {**before, **{k: g.clone() for k, g in made.upstream.items()}}
    exec(cell, on_true)
    exec(cell, on_probe)
    answer = lambda ns: ns[unit.answer].detach().double().numpy()  # noqa: E731
    scale = evidence.tolerance_scale(replay.grads[unit.var], evidence.upstream_gradients(unit, replay.grads))
    assert np.allclose(answer(on_true), replay.grads[unit.var].numpy(), atol=compare.ATOL * scale), \
        "the cell must be right on the true upstreams: the probe only looks at answers that passed"
    return probe.luck(made, answer(on_probe), answer(on_true), scale)


# ---- right answers: no note ----

def test_the_rule_written_out_follows_the_random_upstreams(replay):
    assert _verdict(replay, DLOGITS, f"dlogits = dnorm_logits.clone() + {ONE_HOT_MAX} * dlogit_maxes") is None


def test_dnorm_logits_recomputed_inline_from_dcounts_is_not_called_lucky(replay):
    # the upstream through norm_logits comes from dcounts, which the probe keeps true: not a combination of shares
    cell = f"dlogits = norm_logits.exp() * dcounts\ndlogits += {ONE_HOT_MAX} * dlogit_maxes"
    assert _verdict(replay, DLOGITS, cell) is None


def test_both_branches_recomputed_inline_read_no_upstream(replay):
    cell = (f"dlogits = norm_logits.exp() * dcounts\n"
            f"dlogits += {ONE_HOT_MAX} * -(norm_logits.exp() * dcounts).sum(1, keepdim=True)")
    assert _verdict(replay, DLOGITS, cell) is None


def test_a_partial_sum_kept_by_the_previous_cell_is_not_called_lucky(replay):
    earlier = {"ex1_logit_maxes": "dlogit_maxes = -dnorm_logits.sum(1, keepdim=True)\ndlogits_1 = dnorm_logits.clone()"}
    cell = f"dlogits_2 = {ONE_HOT_MAX} * dlogit_maxes\ndlogits = dlogits_1 + dlogits_2"
    assert _verdict(replay, DLOGITS, cell, earlier) is None


def test_a_batchnorm_partial_sum_kept_by_the_previous_cell_is_not_called_lucky(replay):
    earlier = {"ex1_bndiff2": "dbndiff2 = torch.ones_like(bndiff2) * dbnvar / (n - 1)\ndbndiff_1 = bnvar_inv * dbnraw"}
    cell = "dbndiff = dbndiff_1 + 2 * bndiff * dbndiff2"
    assert _verdict(replay, units.BY_ID["ex1_bndiff"], cell, earlier) is None


# ---- right by luck: a wrong combination of the shares ----

@pytest.mark.parametrize("grade_id, cell, words", [
    ("ex1_logits", "dlogits = dnorm_logits.clone()", "the branch through logit_maxes is missing"),
    ("ex1_logits", f"dlogits = dnorm_logits - {ONE_HOT_MAX} * dlogit_maxes",
     "the branch through logit_maxes has its sign flipped"),
    ("ex1_logit_maxes", "dlogit_maxes = dnorm_logits.sum(1, keepdim=True)", "the sign of dlogit_maxes is flipped"),
    ("ex1_logit_maxes", "dlogit_maxes = torch.zeros_like(logit_maxes)", "dlogit_maxes is written as zeros"),
    ("ex1_b1", "db1 = -dhprebn.sum(0)", "the sign of db1 is flipped"),
    ("ex1_b1", "db1 = torch.zeros(64)", "db1 is written as zeros"),
], ids=["branch left out", "branch sign flipped", "sign flipped", "zeros", "bias sign flipped", "bias zeros"])
def test_a_wrong_combination_of_shares_is_right_by_luck(replay, grade_id, cell, words):
    note = _verdict(replay, units.BY_ID[grade_id], cell)
    assert note is not None and words in note and "exactly 0 here" in note, note


# ---- the combination itself ----

def test_wrong_combination_finds_the_signs_of_the_shares(replay):
    made = probe.make_probe(DLOGITS, replay)
    norm, maxes = made.shares["norm_logits"], made.shares["logit_maxes"]
    assert probe.wrong_combination(made, norm - maxes) == {"norm_logits": 1, "logit_maxes": -1}
    assert probe.wrong_combination(made, np.zeros_like(norm)) == {"norm_logits": 0, "logit_maxes": 0}
    assert probe.wrong_combination(made, norm + maxes) is None  # the rule itself is no slip
    assert probe.wrong_combination(made, norm + 0.5 * maxes) is None  # off by a factor: no combination


# ---- which units get a probe: can_be_lucky, checked on the table's shares ----

def _wrong_combination_gaps(unit: units.Unit, replay) -> dict[tuple[int, ...], float]:
    """For each wrong combination of `unit`'s shares on the true upstreams of `replay` (float64), how far it lies
    from their sum (the right answer), in tolerances of the answer's scale."""
    params = [replay.values64[name] for name in model.PARAMETER_NAMES]
    grads = model.reference_gradients(params, replay.values64["Xb"], replay.values64["Yb"])
    v = evidence.share_namespace(replay.values64, grads, replay.n)
    shares = [share(v).detach().double().numpy() for share in unit.shares.values()]
    right = sum(shares)
    scale = evidence.tolerance_scale(grads[unit.var], evidence.upstream_gradients(unit, grads))
    gaps = {}
    for signs in itertools.product((1, 0, -1), repeat=len(shares)):
        if set(signs) != {1}:
            wrong = sum(sign * s for sign, s in zip(signs, shares))
            gaps[signs] = float(np.abs(wrong - right).max()) / (compare.ATOL * scale)
    return gaps


@pytest.fixture(scope="module")
def fresh_replay(names_file):
    return engine.replay_inputs(4242, 17)


def test_units_without_a_zero_gradient_get_no_probe_because_the_replays_fail_every_wrong_combination(
        replay, fresh_replay):
    skipped = [u for u in units.EXERCISE_1 if "loss" not in u.consumers and not probe.probed(u)]
    assert len(skipped) >= 20, [u.var for u in skipped]  # most units: the probe's cost is saved there
    for unit in skipped:
        for made in (replay, fresh_replay):
            gaps = _wrong_combination_gaps(unit, made)
            assert min(gaps.values()) > 10, (unit.var, made.n, gaps)  # far outside the tolerance (45 at least)


def test_units_with_a_zero_gradient_get_a_probe_because_a_wrong_combination_passes(replay, fresh_replay):
    lucky = [u for u in units.EXERCISE_1 if probe.probed(u)]
    assert {u.var for u in lucky} == {"logit_maxes", "logits", "b1"}
    for unit in lucky:
        for made in (replay, fresh_replay):
            assert min(_wrong_combination_gaps(unit, made).values()) <= 1, (unit.var, made.n)


def test_the_grader_probes_exactly_the_units_can_be_lucky_names():
    # the notebook's check() calls can_be_lucky itself (inlined: test_notebook_checks.py checks the code is the same)
    for unit in units.EXERCISE_1:
        if "loss" not in unit.consumers:
            assert probe.probed(unit) == probe.can_be_lucky(unit.var, unit.consumers)
