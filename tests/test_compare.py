"""check_answer passes every correct float32 answer and names each deliberate mistake, without leaking numbers."""
from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from backprop_ninja import model, units
from backprop_ninja.grade import compare
from backprop_ninja.grade.compare import Check, check_answer, merge_checks, summarize
from backprop_ninja.grade.evidence import build_evidence, share_namespace, upstream_for

REPLAYS = [(2147483647, 32), (101, 32), (202, 17), (303, 50)]  # the grader's: the notebook's own first


@pytest.fixture(scope="module")
def replays(names_file):
    words = names_file.read_text(encoding="utf-8").splitlines()
    Xtr, Ytr = model.build_dataset(model.split_words(words)[0])
    return [model.make_replay(Xtr, Ytr, seed, n) for seed, n in REPLAYS]


@pytest.fixture(scope="module")
def evidence(replays):
    return [build_evidence(r) for r in replays]


def student_namespace(unit: units.Unit, replay: model.Replay):
    """What a student's cell sees: float32 values plus the injected float32 upstream gradients."""
    return share_namespace(replay.values, {k[1:]: g for k, g in upstream_for(unit, replay).items()}, replay.n)


def float32_answer(unit: units.Unit, replay: model.Replay) -> np.ndarray:
    v = student_namespace(unit, replay)
    return sum(share(v) for share in unit.shares.values()).double().numpy()


def float32_manual_backward(replay: model.Replay) -> dict[str, np.ndarray]:
    """Exercise 4 done right in float32: every Exercise 1 step, each fed the previous float32 result."""
    grads = {}
    for unit in units.EXERCISE_1:
        v = share_namespace(replay.values, grads, replay.n)
        grads[unit.var] = sum(share(v) for share in unit.shares.values())
    return {name: grads[name[1:]].double().numpy() for name in units.EX4_RETURNS}


def assert_no_leak(message: str, ev) -> None:
    """Only integers (shapes, n, axes, counts) may appear; a reference value would need a decimal."""
    for token in re.findall(r"\d[\d.eE+-]*", message):
        token = token.rstrip(".-+eE")
        assert token.isdigit(), f"non-integer number {token!r} in: {message}"
        assert not np.isclose(ev.reference, float(token), rtol=1e-3, atol=0).any() or float(token) == 0


# ---- correct answers pass ----

@pytest.mark.parametrize("unit", units.EXERCISE_1, ids=lambda u: u.grade_id)
def test_every_exercise_1_share_formula_in_float32_passes(unit, replays, evidence):
    checks = [check_answer(float32_answer(unit, r), ev[unit.grade_id], unit) for r, ev in zip(replays, evidence)]
    assert all(c.ok for c in checks), [c.mistake for c in checks]
    assert summarize(checks, REPLAYS, unit)[0]


def test_exercises_2_and_3_in_float32_pass(replays, evidence):
    for replay, ev in zip(replays, evidence):
        v = share_namespace(replay.values, {}, replay.n)
        ex2 = units.EXERCISE_2.shares["loss"](v).double().numpy()
        assert check_answer(ex2, ev["ex2_logits"], units.EXERCISE_2).ok
        ex3 = float32_answer(units.EXERCISE_3, replay)
        assert check_answer(ex3, ev["ex3_hprebn"], units.EXERCISE_3).ok


def test_exercise_4_chained_in_float32_passes(replays, evidence):
    for replay, ev in zip(replays, evidence):
        answers = float32_manual_backward(replay)
        checks = {name: check_answer(answers[name], ev["ex4_backward"][name], units.EXERCISE_4, name)
                  for name in units.EX4_RETURNS}
        merged = merge_checks(checks)
        assert merged.ok, merged.mistake


@pytest.mark.parametrize("grade_id", ["ex1_b1", "ex1_logit_maxes"])
def test_gradients_that_are_zero_up_to_rounding(grade_id, replays, evidence):
    unit = units.BY_ID[grade_id]
    for replay, ev in zip(replays, evidence):
        answer = float32_answer(unit, replay)
        assert check_answer(answer, ev[grade_id], unit).ok
        # float32 rounding leaves them far from zero relative to their own size
        assert np.abs(answer).max() > 1e6 * np.abs(ev[grade_id].reference).max()
        wrong_shape = check_answer(answer.reshape(-1, 1) if answer.ndim == 1 else answer.ravel(), ev[grade_id], unit)
        assert not wrong_shape.ok and "shape" in wrong_shape.mistake
        wrong = answer + 0.5 * ev[grade_id].scale
        assert not check_answer(wrong, ev[grade_id], unit).ok


def test_exact_means_bit_equal_to_the_float32_reference(evidence):
    unit = units.BY_ID["ex1_W2"]
    ev = evidence[0][unit.grade_id]
    check = check_answer(ev.reference.astype(np.float32), ev, unit)
    assert check.ok and check.exact
    nudged = np.nextafter(ev.reference.astype(np.float32), np.float32(np.inf))
    check = check_answer(nudged, ev, unit)
    assert check.ok and not check.exact


# ---- mistakes are caught and named ----

def _ref(ev, grade_id):
    return ev[grade_id].reference


def _with_inf(x):
    x = x.copy()
    x.flat[0] = np.inf
    return x


MISTAKES = {
    # name: (grade_id, build(ev_dict, n) -> wrong answer, words the message must contain)
    "times n": ("ex1_logprobs", lambda ev, n: _ref(ev, "ex1_logprobs") * n, "factor n "),
    "divided by n": ("ex1_W2", lambda ev, n: _ref(ev, "ex1_W2") / n, "factor 1/n"),
    "bessel n/(n-1)": ("ex1_bndiff2", lambda ev, n: _ref(ev, "ex1_bndiff2") * n / (n - 1), "factor n/(n-1): Bessel"),
    "bessel (n-1)/n": ("ex1_bndiff2", lambda ev, n: _ref(ev, "ex1_bndiff2") * (n - 1) / n, "factor (n-1)/n: Bessel"),
    "negated": ("ex1_h", lambda ev, n: -_ref(ev, "ex1_h"), "sign is flipped"),
    "transposed": ("ex1_W2", lambda ev, n: _ref(ev, "ex1_W2").T.copy(), "transposed"),
    "branch counts_sum dropped": ("ex1_counts", lambda ev, n: ev["ex1_counts"].shares["probs"],
                                  "only the branch through `probs` is there; `counts` is also used by `counts_sum`"),
    "branch bnraw dropped": ("ex1_bndiff", lambda ev, n: ev["ex1_bndiff"].shares["bndiff2"],
                             "`bndiff` is also used by `bnraw`"),
    "branch bnmeani dropped": ("ex1_hprebn", lambda ev, n: ev["ex1_hprebn"].shares["bndiff"],
                               "`hprebn` is also used by `bnmeani`"),
    "branch bnmeani without 1/n": ("ex1_hprebn",
                                   lambda ev, n: ev["ex1_hprebn"].shares["bndiff"] + n * ev["ex1_hprebn"].shares["bnmeani"],
                                   "the branch through `bnmeani` is off by a factor n;"),
    "keepdim dropped": ("ex1_bngain", lambda ev, n: _ref(ev, "ex1_bngain").reshape(-1),
                        "values right, shape (64,) instead of (1, 64): keep the summed dimension (keepdim=True)"),
    "sum missing": ("ex1_bnbias", lambda ev, n: ev["ex1_hpreact"].reference.copy(),
                    "missing a sum over axis 0 (broadcasting in the forward pass means a sum in the backward pass)"),
    "sum missing on a zero gradient": ("ex1_b1", lambda ev, n: ev["ex1_hprebn"].reference.copy(), "sum over axis 0"),
    "sum over the wrong axis": ("ex1_logit_maxes", lambda ev, n: -ev["ex1_norm_logits"].reference.sum(0, keepdims=True),
                                "should run over axis 1"),
    "NaN": ("ex1_probs", lambda ev, n: np.where(_ref(ev, "ex1_probs") < 0, np.nan, _ref(ev, "ex1_probs")), "contains NaN"),
    "inf": ("ex1_counts_sum", lambda ev, n: _with_inf(_ref(ev, "ex1_counts_sum")), "contains inf"),
    "wrong at the argmax": ("ex1_logits", lambda ev, n: _ref(ev, "ex1_logits") + ev["ex1_logits"].argmax_mask * 0.1,
                            "argmax"),
    "exercise 2 without 1/n": ("ex2_logits", lambda ev, n: _ref(ev, "ex2_logits") * n, "factor n "),
    "zeros": ("ex1_bnraw", lambda ev, n: np.zeros_like(_ref(ev, "ex1_bnraw")), "zero everywhere"),
    "slightly off everywhere": ("ex1_W1", lambda ev, n: _ref(ev, "ex1_W1") * 1.0001, "less than a thousandth"),
    "noise": ("ex1_C", lambda ev, n: _ref(ev, "ex1_C") + np.eye(*_ref(ev, "ex1_C").shape) * 0.3,
              "wrong in 10 of 27 rows, right in the other 17"),
}


@pytest.mark.parametrize("grade_id, build, words", MISTAKES.values(), ids=MISTAKES.keys())
def test_each_mistake_fails_with_its_diagnosis(grade_id, build, words, evidence):
    unit = units.BY_ID[grade_id]
    for (seed, n), ev in zip(REPLAYS, evidence):
        wrong = build(ev, n).astype(np.float32)  # what a float32 student would hand in
        check = check_answer(wrong, ev[grade_id], unit)
        assert not check.ok
        message = check.mistake + " "
        assert words in message, (n, message)
        assert_no_leak(check.mistake, ev[grade_id])


def _student(replay, **grads):
    """The namespace of a student's cell on `replay`, with some gradients (float64) chosen by the test."""
    return share_namespace(replay.values64, {**replay.grads, **grads}, replay.n)


# Mistakes that need the replay's values: name -> (grade_id, build(replay, n), the class, words of the message).
# Each is written as a student would write it, not from the diagnosis's own clues.
MISTAKES_FROM_VALUES = {
    "exercise 3 without Bessel": (
        "ex3_hprebn",
        lambda r, n: (lambda v: v.bngain * v.bnvar_inv / n * (
            n * v.dhpreact - v.dhpreact.sum(0) - v.bnraw * (v.dhpreact * v.bnraw).sum(0)))(_student(r)),
        "branch_factor", "the path through `bnvar` is off by a factor (n-1)/n: Bessel"),
    "exercise 3 without the mean path": (
        "ex3_hprebn",
        lambda r, n: (lambda v: v.bngain * v.bnvar_inv / n * (
            n * v.dhpreact - n / (n - 1) * v.bnraw * (v.dhpreact * v.bnraw).sum(0)))(_student(r)),
        "missing_branch", "`hprebn` is also used by `bnmeani`"),
    "forward value for the upstream": (
        "ex1_probs", lambda r, n: (lambda v: v.logprobs / v.probs)(_student(r)),
        "forward_value", "uses the forward value `logprobs` where its gradient `dlogprobs` belongs"),
    "another variable's gradient": (
        "ex1_bndiff", lambda r, n: r.grads["bnraw"], "other_gradient", "equals the gradient of `bnraw`"),
    "one column wrong": (
        "ex1_bnraw", lambda r, n: r.grads["bnraw"].clone().index_fill_(1, torch.tensor([5]), 0.0),
        "location", "wrong only in column 5 (of 64)"),
    "wrong at the targets": (
        "ex2_logits",
        lambda r, n: torch.softmax(r.values64["logits"], 1) / n, "targets", "correct characters"),
    # issue 14, point 8: slips that had no class of their own
    "plus written for times": (
        "ex1_probs", lambda r, n: (lambda v: 1.0 / v.probs + v.dlogprobs)(_student(r)),
        "plus_for_times", "added to the upstream gradient `dlogprobs` where the chain rule multiplies"),
    "plus for times beside a right branch": (
        "ex1_counts", lambda r, n: (lambda v: v.counts_sum_inv + v.dprobs + torch.ones_like(v.counts) * v.dcounts_sum)(
            _student(r)),
        "plus_for_times", "`dprobs`"),
    "started from ones": (
        "ex1_C", lambda r, n: (lambda v: torch.ones_like(v.C).index_add_(0, v.Xb.view(-1), v.demb.view(-1, v.C.shape[1])))(
            _student(r)),
        "offset", "every entry is one too large"),
    "a forward value for the constant": (
        "ex1_bndiff2", lambda r, n: (lambda v: v.bndiff * v.dbnvar)(_student(r)),
        "forward_for_constant", "a constant, the same in every row"),
    "bias gradient with keepdim": (
        "ex1_b2", lambda r, n: r.grads["b2"].reshape(1, -1),
        "extra_dim", "`b2` has shape (27,), a vector, so its gradient has that shape too; keepdim=True keeps"),
    "zero bias gradient with keepdim": (
        "ex1_b1", lambda r, n: (lambda v: v.dhprebn.sum(0, keepdim=True))(_student(r)),
        "extra_dim", "`b1` has shape (64,), a vector"),
}


@pytest.mark.parametrize("grade_id, build, kind, words", MISTAKES_FROM_VALUES.values(), ids=MISTAKES_FROM_VALUES.keys())
def test_mistakes_written_from_the_values_are_named(grade_id, build, kind, words, replays, evidence):
    unit = units.BY_ID[grade_id]
    for replay, ev in zip(replays, evidence):
        wrong = build(replay, replay.n).double().numpy().astype(np.float32)
        check = check_answer(wrong, ev[grade_id], unit)
        assert not check.ok
        assert check.kind == kind and words in check.mistake, (replay.n, check.kind, check.mistake)
        assert_no_leak(check.mistake, ev[grade_id])


def test_exercise_4_names_the_stretch_of_the_chain_where_it_first_goes_wrong(replays, evidence):
    answers = float32_manual_backward(replays[0])
    for name in ("dW1", "dC"):  # as if dhprebn were wrong (db1 is ~0, so right whatever the factor)
        answers[name] = answers[name] * 2
    checks = {name: check_answer(answers[name], evidence[0]["ex4_backward"][name], units.EXERCISE_4, name)
              for name in units.EX4_RETURNS}
    merged = merge_checks(checks)
    assert merged.mistake.startswith("dW2, db2, dbngain, dbnbias, db1 are right; dW1, dC are wrong: the first "
                                     "mistake is between hpreact and hprebn (the batchnorm backward)"), merged.mistake


def test_exercise_4_messages_start_with_the_gradients_name(replays, evidence):
    answers = float32_manual_backward(replays[0])
    answers["dW1"] = answers["dW1"] * 2
    checks = {name: check_answer(answers[name], evidence[0]["ex4_backward"][name], units.EXERCISE_4, name)
              for name in units.EX4_RETURNS}
    assert [name for name, c in checks.items() if not c.ok] == ["dW1"]
    assert checks["dW1"].mistake.startswith("dW1: off by a factor 2")
    merged = merge_checks(checks)
    assert not merged.ok and merged.mistake.endswith("; " + checks["dW1"].mistake)
    assert "look at the line that computes dW1 itself" in merged.mistake


def test_mismatch_marks_where_the_answer_is_off(evidence):
    ev = evidence[0]["ex1_W2"]
    wrong = ev.reference.copy()
    wrong[3, 5] += 1.0
    check = check_answer(wrong, ev, units.BY_ID["ex1_W2"])
    assert not check.ok and check.mismatch.shape == ev.reference.shape
    assert check.mismatch.sum() == 1 and check.mismatch[3, 5]
    assert check.max_diff == pytest.approx(1.0)
    assert "1 of" in check.mistake


# ---- over all replays ----

def _run(unit, answers, evidence):
    return [check_answer(a, ev[unit.grade_id], unit) for a, ev in zip(answers, evidence)]


def test_a_literal_32_is_recognised(replays, evidence):
    unit = units.BY_ID["ex1_logprobs"]
    # dlogprobs written with 1/32 instead of 1/n: right exactly when n == 32
    answers = [_ref(ev, unit.grade_id) * r.n / 32 for r, ev in zip(replays, evidence)]
    ok, message = summarize(_run(unit, answers, evidence), REPLAYS, unit)
    assert not ok and "literal 32" in message


def test_an_answer_hard_coded_to_the_notebooks_run_is_recognised(evidence):
    unit = units.BY_ID["ex1_h"]
    notebook_answer = _ref(evidence[0], unit.grade_id)
    ok, message = summarize(_run(unit, [notebook_answer] * 4, evidence), REPLAYS, unit)
    assert not ok and "hard-coded" in message


def test_summary_prefers_the_mistake_of_a_batch_of_32():
    ok_check = Check(True, False, 0.0, None, None)
    wrong_17 = Check(False, False, None, None, "from the batch of 17")
    wrong_32 = Check(False, False, None, None, "from the batch of 32")
    ok, message = summarize([wrong_17, ok_check, wrong_17, wrong_32], [(1, 17), (2, 16), (3, 17), (4, 32)],
                            units.BY_ID["ex1_h"])
    assert not ok and message == "from the batch of 32"
    ok, message = summarize([ok_check] * 4, REPLAYS, units.BY_ID["ex1_h"])
    assert ok


def test_a_wrong_answer_everywhere_is_not_called_hard_coded(evidence):
    unit = units.BY_ID["ex1_h"]
    answers = [-_ref(ev, unit.grade_id) for ev in evidence]
    ok, message = summarize(_run(unit, answers, evidence), REPLAYS, unit)
    assert not ok and "sign is flipped" in message and "hard-coded" not in message


def test_the_tolerance_sits_between_rounding_and_the_smallest_mistake(evidence):
    # A factor n/(n-1) on a gradient that is not ~0 must fail, on every replay and Exercise 1 unit.
    for (seed, n), ev in zip(REPLAYS, evidence):
        for unit in units.EXERCISE_1:
            e = ev[unit.grade_id]
            if np.abs(e.reference).max() <= compare.ATOL * e.scale:
                continue  # db1 and dlogit_maxes: zero, any factor of them is right
            assert not check_answer(e.reference * n / (n - 1), e, unit).ok, (unit.grade_id, n)


def test_compare_runs_without_torch():
    code = "import sys, backprop_ninja.grade.compare; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---- issue 9.2/9.4: the stress and float64 replays ----

@pytest.fixture(scope="module")
def special(names_file):
    """(replay, evidence) of the stress, the float64 and the stress-in-float64 replay, at n = 32."""
    words = names_file.read_text(encoding="utf-8").splitlines()
    Xtr, Ytr = model.build_dataset(model.split_words(words)[0])
    out = {}
    for variant in (model.STRESS, model.FLOAT64, model.STRESS64):
        replay = model.make_replay(Xtr, Ytr, 404, 32, variant=variant)
        out[variant] = (replay, build_evidence(replay))
    return out


@pytest.mark.parametrize("variant", [model.STRESS, model.FLOAT64, model.STRESS64])
def test_correct_answers_pass_the_special_replays(variant, special):
    replay, ev = special[variant]
    for unit in units.EXERCISE_1 + (units.EXERCISE_2, units.EXERCISE_3):
        answer = float32_answer(unit, replay)  # computed in the replay's dtype: float64 on the float64 replay
        check = check_answer(answer, ev[unit.grade_id], unit)
        assert check.ok, (variant, unit.grade_id, check.mistake)


def test_the_float64_replay_tolerance_is_near_float64_rounding(special):
    replay, ev = special[model.FLOAT64]
    unit = units.BY_ID["ex1_bnvar"]
    e = ev[unit.grade_id]
    assert compare.ATOL_FLOAT64 <= 1e-9 and e.variant == model.FLOAT64
    v = student_namespace(unit, replay)
    no_eps = (-0.5 * v.bnvar ** -1.5 * v.dbnvar_inv).numpy()  # off by a few parts in a million
    assert not check_answer(no_eps, e, unit).ok
    # the same answer computed in float32 on this replay is judged like a float32 answer: as exact as it can be
    assert check_answer(e.reference.astype(np.float32).astype(np.float64), e, unit).ok


@pytest.mark.parametrize("variant", [model.STRESS, model.STRESS64])
def test_a_missing_epsilon_is_named_on_the_stress_replay(variant, special):
    replay, ev = special[variant]
    unit = units.BY_ID["ex1_bnvar"]
    v = student_namespace(unit, replay)
    check = check_answer((-0.5 * v.bnvar ** -1.5 * v.dbnvar_inv).double().numpy(), ev[unit.grade_id], unit)
    assert not check.ok and f"column {model.TINY_VARIANCE_COLUMN}" in check.mistake and "epsilon" in check.mistake
    assert_no_leak(check.mistake, ev[unit.grade_id])


def test_a_near_miss_is_named_after_the_special_replay_that_shows_it():
    unit = units.BY_ID["ex1_bnvar"]
    ok = Check(True, False, 0.0, None, None)
    near = Check(False, False, 0.0, None, "values differ at 1 of 64 positions", "differs", near=True)
    far = Check(False, False, 0.0, None, "the sign is flipped", "sign")
    plan = REPLAYS + [(404, 32, model.STRESS), (505, 32, model.FLOAT64)]
    passed, message = summarize([ok, ok, ok, ok, ok, near], plan, unit)
    assert not passed and message.startswith("nearly right: right on the ordinary replays")
    assert "float64 replay" in message and "stress replay" not in message
    passed, message = summarize([ok, near, ok, near, near, ok], plan, unit)
    assert not passed and "off by little more than rounding" in message and "stress replay" in message
    # a clear mistake on an ordinary replay keeps the ordinary rules and message
    assert summarize([ok, far, far, far, far, far], plan, unit) == summarize([ok, far, far, far], REPLAYS, unit)
