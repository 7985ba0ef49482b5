"""What the grader compares an answer with: autograd's gradient, its shares per consumer and the scale
the tolerance is relative to. Trusted side of the grader (it imports torch); compare.py only sees numpy.

Built in the grader process only, after the child that runs student code has been forked.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np
import torch

from backprop_ninja import model, units


@dataclass
class Evidence:
    """Everything compare.py needs about one unit on one replay (all numpy, float64)."""

    reference: np.ndarray             # autograd's gradient for this unit on this replay
    shares: dict[str, np.ndarray]     # consumer -> this variable's share (from units.Unit.shares)
    scale: float                      # magnitude the tolerance is relative to: see docs/tolerances.md
    n: int                            # batch size of the replay
    argmax_mask: np.ndarray | None    # units tagged "argmax": True at logits.argmax(1) of each row
    transposable: bool                # the reference is a matrix whose transpose is a different array
    # Known mistakes that are no simple factor of the reference: message -> the wrong gradient.
    known_mistakes: dict[str, np.ndarray] = field(default_factory=dict)


def share_namespace(values: dict[str, torch.Tensor], grads: dict[str, torch.Tensor], n: int) -> SimpleNamespace:
    """The `v` the share lambdas of units.py read: values, gradients as d<name>, and n."""
    return SimpleNamespace(**values, **{"d" + k: g for k, g in grads.items()}, n=n)


def upstream_gradients(unit: units.Unit, grads: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The gradient of every consumer of `unit`'s variable; the loss's own gradient is 1."""
    return {c: torch.ones(()) if c == "loss" else grads[c] for c in unit.consumers}


def tolerance_scale(reference: torch.Tensor, upstream: dict[str, torch.Tensor]) -> float:
    """The largest magnitude among the reference and the gradients it is computed from.

    Rounding errors of a correct float32 answer are proportional to the numbers it is computed from,
    not to the result: db1 and dlogit_maxes are zero up to rounding, yet come from sums of
    gradients that are not. A tiny positive floor keeps a division by zero out of compare.py.
    """
    magnitudes = [reference.abs().max().item()] + [g.abs().max().item() for g in upstream.values()]
    return max(magnitudes + [np.finfo(np.float64).tiny])


def unit_evidence(unit: units.Unit, replay: model.Replay, reference: torch.Tensor) -> Evidence:
    v = share_namespace(replay.values64, replay.grads, replay.n)
    shares = {c: share(v).detach().double().numpy() for c, share in unit.shares.items()}
    mask = None
    if "argmax" in unit.tags:
        logits = replay.values64["logits"]
        mask = torch.nn.functional.one_hot(logits.argmax(1), logits.shape[1]).bool().numpy()
    ref = reference.detach().double().numpy()
    known = {}
    if unit is units.EXERCISE_3:
        known[_BESSEL_MIXUP] = _batchnorm_backward_without_bessel(v).numpy()
    return Evidence(
        reference=ref,
        shares=shares,
        scale=tolerance_scale(reference.double(), upstream_gradients(unit, replay.grads)),
        n=replay.n,
        argmax_mask=mask,
        transposable=ref.ndim == 2 and min(ref.shape) > 1,
        known_mistakes=known,
    )


_BESSEL_MIXUP = ("mixes n and n-1: the forward pass divides the variance by n-1 (Bessel's correction), "
                 "so the backward pass must use n-1 where the variance is differentiated")


def _batchnorm_backward_without_bessel(v) -> torch.Tensor:
    # Exercise 3's gradient as derived with a variance over n: the classic slip of that exercise.
    return v.bngain * v.bnvar_inv / v.n * (
        v.n * v.dhpreact - v.dhpreact.sum(0) - v.bnraw * (v.dhpreact * v.bnraw).sum(0))


# The Exercise 1 unit of each parameter: Exercise 4's gradients are judged like those units.
_PARAMETER_UNITS = {u.var: u for u in units.EXERCISE_1 if u.var in model.PARAMETER_NAMES}


def build_evidence(replay: model.Replay, only: set[str] | None = None) -> dict[str, Evidence | dict[str, Evidence]]:
    """Evidence for every unit (or those whose grade_id is in `only`) on one replay, keyed by grade_id;
    Exercise 4's is keyed by d<parameter>."""
    evidence: dict[str, Evidence | dict[str, Evidence]] = {}
    for unit in units.UNITS:
        if only is not None and unit.grade_id not in only:
            continue
        if unit.exercise == 4:
            evidence[unit.grade_id] = {
                name: unit_evidence(_PARAMETER_UNITS[name[1:]], replay, replay.grads[name[1:]])
                for name in units.EX4_RETURNS
            }
        else:
            evidence[unit.grade_id] = unit_evidence(unit, replay, replay.grads[unit.var])
    return evidence


def upstream_for(unit: units.Unit, replay: model.Replay) -> dict[str, torch.Tensor]:
    """Float32 reference gradients the engine injects before running `unit`'s answer cell.

    Exercise 1: those of every earlier Exercise 1 unit (the student's chain so far, made exact, so one
    mistake costs one unit). Exercise 3: dhpreact, the starting point of the batchnorm backward.
    Exercises 2 and 4 start from the loss, so they get nothing.
    """
    if unit.exercise == 1:
        earlier = units.EXERCISE_1[: units.EXERCISE_1.index(unit)]
        names = [u.var for u in earlier]
    elif unit.exercise == 3:
        names = ["hpreact"]
    else:
        names = []
    return {"d" + name: _float32_grads(replay)[name] for name in names}


def _float32_grads(replay: model.Replay) -> dict[str, torch.Tensor]:
    """The replay's reference gradients in float32, converted once (callers must not modify them)."""
    cached = getattr(replay, "_float32_grads", None)
    if cached is None or cached[0] is not replay.grads:
        cached = (replay.grads, {name: g.float() for name, g in replay.grads.items()})
        replay._float32_grads = cached
    return cached[1]
