"""Autograd's reference and the shares of units.py: checked against finite differences and each other."""
from __future__ import annotations

import pytest
import torch

from backprop_ninja import model, units
from backprop_ninja.grade.evidence import build_evidence, share_namespace, upstream_for

# Batch sizes beyond the grader's replays, down to the degenerate n = 2 of batchnorm.
REPLAYS = [(2147483647, 32), (101, 32), (202, 17), (303, 50), (404, 2), (505, 3)]


@pytest.fixture(scope="module")
def training_set(names_file):
    words = names_file.read_text(encoding="utf-8").splitlines()
    return model.build_dataset(model.split_words(words)[0])


@pytest.fixture(scope="module")
def replays(training_set):
    return [model.make_replay(*training_set, seed, n) for seed, n in REPLAYS]


# The forward pass restated one line per intermediate, so that a finite difference can nudge any
# intermediate and recompute only what comes after it. A test checks it against model.forward.
FORWARD = (
    ("emb", lambda v: v["C"][v["Xb"]]),
    ("embcat", lambda v: v["emb"].reshape(v["emb"].shape[0], -1)),
    ("hprebn", lambda v: v["embcat"] @ v["W1"] + v["b1"]),
    ("bnmeani", lambda v: v["hprebn"].mean(0, keepdim=True)),
    ("bndiff", lambda v: v["hprebn"] - v["bnmeani"]),
    ("bndiff2", lambda v: v["bndiff"] ** 2),
    ("bnvar", lambda v: v["bndiff2"].sum(0, keepdim=True) / (v["n"] - 1)),
    ("bnvar_inv", lambda v: (v["bnvar"] + model.BN_EPS) ** -0.5),
    ("bnraw", lambda v: v["bndiff"] * v["bnvar_inv"]),
    ("hpreact", lambda v: v["bngain"] * v["bnraw"] + v["bnbias"]),
    ("h", lambda v: torch.tanh(v["hpreact"])),
    ("logits", lambda v: v["h"] @ v["W2"] + v["b2"]),
    ("logit_maxes", lambda v: v["logits"].max(1, keepdim=True).values),
    ("norm_logits", lambda v: v["logits"] - v["logit_maxes"]),
    ("counts", lambda v: v["norm_logits"].exp()),
    ("counts_sum", lambda v: v["counts"].sum(1, keepdim=True)),
    ("counts_sum_inv", lambda v: 1.0 / v["counts_sum"]),
    ("probs", lambda v: v["counts"] * v["counts_sum_inv"]),
    ("logprobs", lambda v: v["probs"].log()),
    ("loss", lambda v: -v["logprobs"][torch.arange(v["n"]), v["Yb"]].mean()),
)
STEPS = [name for name, _ in FORWARD]


def loss_after(values: dict, changed: str) -> float:
    """The loss, recomputing every line after `changed` (a parameter counts as before everything)."""
    v = dict(values)
    start = STEPS.index(changed) + 1 if changed in STEPS else 0
    for name, line in FORWARD[start:]:
        v[name] = line(v)
    return v["loss"].item()


def test_restated_forward_matches_model(replays):
    replay = replays[2]
    v = {k: t.clone() for k, t in replay.values64.items()}
    v["n"] = replay.n
    for name, line in FORWARD:
        v[name] = line(v)
        torch.testing.assert_close(v[name], replay.values64[name], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("seed, n", [(11, 5), (12, 8)])
def test_reference_gradients_match_central_differences(training_set, seed, n):
    replay = model.make_replay(*training_set, seed, n)
    values = {k: t.clone() for k, t in replay.values64.items()}
    values["n"] = n
    rng = torch.Generator().manual_seed(seed)
    step = 1e-6
    for name in model.INTERMEDIATES + model.PARAMETER_NAMES:
        grad = replay.grads[name]
        for flat in torch.randint(0, grad.numel(), (3,), generator=rng).tolist():
            nudged = {}
            for sign in (1, -1):
                v = dict(values)
                v[name] = values[name].clone()
                v[name].view(-1)[flat] += sign * step
                nudged[sign] = loss_after(v, name)
            numeric = (nudged[1] - nudged[-1]) / (2 * step)
            analytic = grad.view(-1)[flat].item()
            assert abs(numeric - analytic) <= 1e-7 + 1e-5 * abs(analytic), (name, flat, numeric, analytic)


def test_finite_differences_would_notice_a_wrong_gradient(training_set):
    # Guards the test above: a gradient off by a factor n/(n-1) is outside its bound.
    replay = model.make_replay(*training_set, 11, 5)
    values = dict(replay.values64, n=5)
    flat, step = 0, 1e-6
    up = dict(values, bnvar=values["bnvar"].clone())
    up["bnvar"].view(-1)[flat] += step
    down = dict(values, bnvar=values["bnvar"].clone())
    down["bnvar"].view(-1)[flat] -= step
    numeric = (loss_after(up, "bnvar") - loss_after(down, "bnvar")) / (2 * step)
    wrong = replay.grads["bnvar"].view(-1)[flat].item() * 5 / 4
    assert abs(numeric - wrong) > 1e-7 + 1e-5 * abs(wrong)


def _shares_sum(unit: units.Unit, replay: model.Replay) -> torch.Tensor:
    v = share_namespace(replay.values64, replay.grads, replay.n)
    return sum(share(v) for share in unit.shares.values())


@pytest.mark.parametrize("unit", units.EXERCISE_1 + (units.EXERCISE_2, units.EXERCISE_3), ids=lambda u: u.grade_id)
def test_shares_add_up_to_the_reference(unit, replays):
    for replay in replays:
        total = _shares_sum(unit, replay)
        reference = replay.grads[unit.var]
        assert total.shape == reference.shape, (unit.grade_id, replay.n)
        scale = max(reference.abs().max().item(), 1.0 / replay.n)
        assert (total - reference).abs().max().item() <= 1e-10 * scale, (unit.grade_id, replay.seed, replay.n)


def test_evidence_covers_every_unit_and_exercise_4s_gradients(replays):
    replay = replays[1]
    evidence = build_evidence(replay)
    assert set(evidence) == set(units.BY_ID)
    assert set(evidence["ex4_backward"]) == set(units.EX4_RETURNS)
    for name, ev in evidence["ex4_backward"].items():
        assert (ev.reference == replay.grads[name[1:]].numpy()).all()
    for unit in units.EXERCISE_1:
        ev = evidence[unit.grade_id]
        assert ev.n == replay.n and set(ev.shares) == set(unit.consumers)
        assert (ev.reference == replay.grads[unit.var].numpy()).all()
        assert ev.scale >= abs(ev.reference).max()
        assert (ev.argmax_mask is not None) == ("argmax" in unit.tags)


def test_the_scale_of_a_zero_gradient_comes_from_its_upstream(replays):
    # db1 is zero up to rounding, yet its float32 rounding is that of the dhprebn it sums.
    ev = build_evidence(replays[0])["ex1_b1"]
    assert abs(ev.reference).max() < 1e-12
    assert ev.scale == replays[0].grads["hprebn"].abs().max().item()


@pytest.fixture(scope="module")
def special_replays(training_set):
    """The stress and float64 replays (model.VARIANTS) of the grader's batch sizes."""
    return [model.make_replay(*training_set, seed, n, variant=variant)
            for variant in (model.STRESS, model.FLOAT64, model.STRESS64) for seed, n in REPLAYS[1:4]]


@pytest.mark.parametrize("unit", units.EXERCISE_1 + (units.EXERCISE_2, units.EXERCISE_3), ids=lambda u: u.grade_id)
def test_shares_add_up_to_the_reference_on_the_special_replays(unit, special_replays):
    for replay in special_replays:
        total = _shares_sum(unit, replay)
        reference = replay.grads[unit.var]
        scale = max(reference.abs().max().item(), 1.0 / replay.n)
        assert (total - reference).abs().max().item() <= 1e-10 * scale, (unit.grade_id, replay.variant, replay.n)


def test_the_stress_replay_has_its_conditions_in_float32_and_float64(special_replays):
    for replay in (r for r in special_replays if r.variant in model.STRESSED):
        for values in (replay.values, replay.values64):
            column = model.TINY_VARIANCE_COLUMN
            assert values["bnvar"][0, column] < model.BN_EPS  # the epsilon dominates there
            assert values["bnvar"].squeeze(0).sort().values[1] > 100 * model.BN_EPS  # and only there
            logits, (first, second) = values["logits"], model.TIE_COLUMNS
            tied = (logits[:, first] == logits[:, second]) & (logits[:, first] == logits.max(1).values)
            assert 0 < tied.sum() < replay.n  # exact ties at the maximum, in some rows
            assert logits.std() > 3 and logits.abs().max() < 50  # large, far from exp's float32 overflow
        assert torch.equal(replay.values["logits"].argmax(1), replay.values64["logits"].argmax(1))


def test_on_tied_maxima_the_max_share_and_autograd_pick_the_same_position(special_replays):
    # autograd sends the gradient of logits.max(1).values to the index max returns (the first of the tied),
    # and so must the table's share (logits.argmax(1)): checked with a random upstream, not the ~0 dlogit_maxes
    unit = units.BY_ID["ex1_logits"]
    for replay in (r for r in special_replays if r.variant in model.STRESSED):
        logits = replay.values64["logits"].clone().requires_grad_()
        upstream = torch.randn((replay.n, 1), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        logits.max(1, keepdim=True).values.backward(upstream)
        v = share_namespace(replay.values64, {**replay.grads, "logit_maxes": upstream}, replay.n)
        assert torch.equal(unit.shares["logit_maxes"](v), logits.grad)


def test_argmax_mask_marks_one_position_per_row(replays):
    replay = replays[3]
    mask = build_evidence(replay)["ex1_logits"].argmax_mask
    assert mask.shape == tuple(replay.grads["logits"].shape)
    assert (mask.sum(1) == 1).all()
    assert (mask.argmax(1) == replay.values64["logits"].argmax(1).numpy()).all()


def test_upstream_for_gives_exactly_the_earlier_gradients_in_float32(replays):
    replay = replays[0]
    order = [u.var for u in units.EXERCISE_1]
    for i, unit in enumerate(units.EXERCISE_1):
        upstream = upstream_for(unit, replay)
        assert set(upstream) == {"d" + var for var in order[:i]}
        for name, tensor in upstream.items():
            assert tensor.dtype == torch.float32 and not tensor.requires_grad
            assert torch.equal(tensor, replay.grads[name[1:]].float())
    assert set(upstream_for(units.EXERCISE_3, replay)) == {"dhpreact"}
    assert upstream_for(units.EXERCISE_2, replay) == {}
    assert upstream_for(units.EXERCISE_4, replay) == {}
