"""What the grader compares an answer with: autograd's gradient, its shares per consumer and the scale
the tolerance is relative to. Trusted side of the grader (it imports torch); compare.py only sees numpy.

Built in the grader process only, after the child that runs student code has been forked.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import numpy as np
import torch

from backprop_ninja import diagnose, model, units


@dataclass
class Evidence:
    """Everything compare.py needs about one unit on one replay (all numpy, float64)."""

    reference: np.ndarray             # autograd's gradient for this unit on this replay
    make_shares: Callable[[], dict]   # -> consumer -> this variable's share (units.Unit.shares): see `shares`
    scale: float                      # magnitude the tolerance is relative to: see docs/tolerances.md
    n: int                            # batch size of the replay
    argmax_mask: np.ndarray | None    # units tagged "argmax": True at logits.argmax(1) of each row
    bessel: bool = False              # n-1 on the way is Bessel's correction (named so in messages)
    # The rest of the clues of diagnose.py (paths, forward swaps, other gradients, targets): built only when an
    # answer is wrong, since most are right and these cost a forward pass.
    more_clues: Callable[[], dict] | None = None
    variant: str = model.PLAIN        # the replay's model.VARIANTS: those in float64 set the tolerance (compare.py)
    tiny_column: int | None = None    # on the stress replay, the last-axis position of the tiny-variance column

    @functools.cached_property
    def relative_tolerance(self) -> np.ndarray:
        """compare.RTOL times |reference|: the part of the tolerance that does not depend on the answer."""
        from backprop_ninja.grade.compare import RTOL

        return RTOL * np.abs(self.reference)

    @functools.cached_property
    def reference_in_float32(self) -> np.ndarray:
        """The reference rounded to float32 (in float64): what a bit-exact float32 answer equals."""
        return self.reference.astype(np.float32).astype(np.float64)

    @functools.cached_property
    def shares(self) -> dict[str, np.ndarray]:
        """Computed when first asked for: most answers are right, and a right answer needs only the reference."""
        return self.make_shares()

    @functools.cached_property
    def _more_clues(self) -> dict:
        """more_clues(), made once: a batch worker's draw keeps its evidence for many gradings (engine.SharedDraw),
        and each wrong answer on this replay asks for the same clues (a forward pass with autograd each time).
        Its arrays are made read-only, so that no diagnosis can change what the next one reads."""
        more = self.more_clues() if self.more_clues is not None else {}
        for value in more.values():
            for array in (value.values() if isinstance(value, dict) else [value]):
                if isinstance(array, np.ndarray):
                    array.setflags(write=False)
        return more

    def clues(self) -> diagnose.Clues:
        more = dict(self._more_clues)
        return diagnose.Clues(n=self.n, scale=self.scale, bessel=self.bessel, shares=more.pop("shares", self.shares),
                              argmax=self.argmax_mask, **more)


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
    def shares() -> dict[str, np.ndarray]:
        v = share_namespace(replay.values64, replay.grads, replay.n)
        return {c: share(v).detach().double().numpy() for c, share in unit.shares.items()}

    row = _DIAGNOSTIC_TABLE[unit.var]
    mask = None
    if row["argmax"]:
        logits = replay.values64["logits"]
        mask = torch.nn.functional.one_hot(logits.argmax(1), logits.shape[1]).bool().numpy()
    return Evidence(
        reference=reference.detach().double().numpy(),
        make_shares=shares,
        scale=tolerance_scale(reference.double(), upstream_gradients(unit, replay.grads)),
        n=replay.n,
        argmax_mask=mask,
        bessel=row["bessel"],
        more_clues=lambda: more_clues(unit.var, replay),
        variant=replay.variant,
        tiny_column=_tiny_column(reference, replay),
    )


def _tiny_column(reference: torch.Tensor, replay: model.Replay) -> int | None:
    """On the stress replay, where the batchnorm column of tiny variance sits in a gradient laid out by hidden
    unit (last axis of size n_hidden: dhprebn, dW1, dbngain, dbnvar...); None elsewhere."""
    if replay.variant not in model.STRESSED or reference.ndim == 0:
        return None
    return model.TINY_VARIANCE_COLUMN if reference.shape[-1] == replay.values["W1"].shape[1] else None


_DIAGNOSTIC_TABLE = units.diagnostic_table()
_EXERCISE_1_BY_VAR = {u.var: u for u in units.EXERCISE_1}


def more_clues(var: str, replay: model.Replay) -> dict:
    """The clues of diagnose.py that cost more than the reference: the share of each line that uses `var`, the
    same with one line's forward value in place of its gradient, the paths of a one-go exercise (autograd's share
    through each line), the gradients of the other variables of the same shape, and the target positions.

    The notebook's check builds the same clues from its own autograd run (the generated `diagnoses` cell), so
    both name the same mistake."""
    v = share_namespace(replay.values64, replay.grads, replay.n)
    unit = _EXERCISE_1_BY_VAR[var]
    shares = {c: share(v).detach().double() for c, share in unit.shares.items()}
    swaps = {}
    for consumer, share in unit.shares.items():
        if consumer == "loss":
            continue
        swapped = share_namespace(replay.values64, {**replay.grads, consumer: replay.values64[consumer]}, replay.n)
        rest = sum((s for c, s in shares.items() if c != consumer), torch.zeros(()))
        swaps[consumer] = (share(swapped).detach().double() + rest).numpy()
    reference = replay.grads[var]
    others = {name: g.numpy() for name, g in replay.grads.items()
              if name in _EXERCISE_1_BY_VAR and name != var and g.shape == reference.shape}
    targets = None
    if units.SHAPES.get(var) == "(n, 27)":  # one row per example, one column per character
        targets = torch.nn.functional.one_hot(replay.values64["Yb"], len(model.VOCAB)).bool().numpy()
    repeated = None
    if _DIAGNOSTIC_TABLE[var]["lookup"]:
        uses = torch.bincount(replay.values64["Xb"].reshape(-1), minlength=reference.shape[0])
        repeated = (uses > 1)[:, None].expand(reference.shape).numpy()
    return {"shares": {c: s.numpy() for c, s in shares.items()}, "forward_swaps": swaps, "others": others,
            "targets": targets, "repeated": repeated, "paths": _paths(var, _DIAGNOSTIC_TABLE[var]["paths"], replay)}


def _paths(var: str, through: list[str], replay: model.Replay) -> dict[str, np.ndarray]:
    """autograd's share of var's gradient through each line of `through`, and the direct rest under "direct"."""
    if not through:
        return {}
    params = [replay.values64[name].clone().requires_grad_() for name in model.PARAMETER_NAMES]
    with torch.enable_grad():
        values = model.forward(params, replay.values64["Xb"], replay.values64["Yb"])
        # sum(out * g) backpropagates exactly g into out, as grad_outputs=g would; given a grad_outputs tensor,
        # torch.autograd.grad imports sympy (0.4 s of CPU in every batch worker's first grading)
        parts = {line: torch.autograd.grad((values[line] * replay.grads[line]).sum(), values[var],
                                           retain_graph=True)[0]
                 for line in through}
    parts["direct"] = replay.grads[var] - sum(parts.values())
    return {line: part.detach().numpy() for line, part in parts.items()}


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


_EARLIER_VARS = {u.grade_id: [e.var for e in units.EXERCISE_1[:k]] for k, u in enumerate(units.EXERCISE_1)}


def upstream_for(unit: units.Unit, replay: model.Replay) -> dict[str, torch.Tensor]:
    """Float32 reference gradients the engine injects before running `unit`'s answer cell (float64 ones on the
    float64 replay).

    Exercise 1: those of every earlier Exercise 1 unit (the student's chain so far, made exact, so one
    mistake costs one unit). Exercise 3: dhpreact, the starting point of the batchnorm backward.
    Exercises 2 and 4 start from the loss, so they get nothing.
    """
    if unit.exercise == 1:
        names = _EARLIER_VARS[unit.grade_id]
    elif unit.exercise == 3:
        names = ["hpreact"]
    else:
        names = []
    # the student's code runs in float64 on the float64 replay: so do its upstreams
    grads = replay.grads if replay.variant in model.IN_FLOAT64 else _float32_grads(replay)
    return {"d" + name: grads[name] for name in names}


def _float32_grads(replay: model.Replay) -> dict[str, torch.Tensor]:
    """The replay's reference gradients in float32, converted once (callers must not modify them)."""
    cached = getattr(replay, "_float32_grads", None)
    if cached is None or cached[0] is not replay.grads:
        cached = (replay.grads, {name: g.float() for name, g in replay.grads.items()})
        replay._float32_grads = cached
    return cached[1]
