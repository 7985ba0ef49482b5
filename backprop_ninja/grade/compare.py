"""Judge one answer against autograd's gradient, and say what the likely mistake is.

numpy only (no torch): this runs in the grader process on the raw float64 arrays the child sent back.
The tolerance rule and its calibration are in docs/tolerances.md. Messages name a mistake, never a
reference value or expression: the only numbers in them are shapes, n, axes and counts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only for annotations: importing them would import torch
    from backprop_ninja import units
    from backprop_ninja.grade.evidence import Evidence

# |answer - reference| <= ATOL * scale + RTOL * |reference|, elementwise (docs/tolerances.md).
ATOL = 3e-5
RTOL = 0.0
# How closely an answer must follow a model of a mistake (e.g. n times the reference) to be named
# after it, relative to the model's size. Loose, since it only picks the message; 1e-3 still tells
# n/(n-1) from 1 for every batch size the grader replays (n <= 50).
DIAGNOSIS_RTOL = 1e-3

NOTEBOOK_REPLAY = (2147483647, 32)


@dataclass
class Check:
    """The outcome of one unit on one replay."""

    ok: bool
    exact: bool                   # bit-exact against the reference cast to float32 (information only)
    max_diff: float | None        # None if the shapes differ or the answer is not finite
    mismatch: np.ndarray | None   # bool, reference's shape: where |answer - ref| > tol (None if shapes differ)
    mistake: str | None           # the diagnosis, a sentence for the student (None when ok)


def tolerance(ev: Evidence) -> np.ndarray:
    return ATOL * ev.scale + RTOL * np.abs(ev.reference)


def check_answer(answer: np.ndarray, ev: Evidence, unit: units.Unit, name: str | None = None) -> Check:
    """Compare `answer` with the reference of `ev`; `name` (e.g. "dW1") prefixes the message."""
    a = np.asarray(answer, dtype=np.float64)
    ref = ev.reference
    var = name[1:] if name else unit.var
    prefix = f"{name}: " if name else ""

    if a.shape != ref.shape:
        return Check(False, False, None, None, prefix + _diagnose_shape(a, ev))
    diff = np.abs(a - ref)
    finite = np.isfinite(a)
    mismatch = ~finite | (diff > tolerance(ev))
    exact = bool(np.array_equal(a, ref.astype(np.float32).astype(np.float64)))
    max_diff = float(diff.max()) if finite.all() else None
    if not mismatch.any():
        return Check(True, exact, max_diff, mismatch, None)
    if not finite.all():
        what = "NaN" if np.isnan(a).any() else "inf"
        mistake = (f"contains {what} at {int((~finite).sum())} of {a.size} positions: "
                   f"look for a division by zero or a log/power of a non-positive number")
    else:
        mistake = _diagnose_values(a, ev, unit, var, mismatch)
    return Check(False, exact, max_diff, mismatch, prefix + mistake)


def merge_checks(checks: dict[str, Check]) -> Check:
    """One Check for several gradients of one replay (Exercise 4): ok only if all are."""
    diffs = [c.max_diff for c in checks.values()]
    mistakes = [c.mistake for c in checks.values() if not c.ok and c.mistake]
    return Check(
        ok=all(c.ok for c in checks.values()),
        exact=all(c.exact for c in checks.values()),
        max_diff=None if None in diffs else max(diffs, default=0.0),
        mismatch=None,
        mistake="; ".join(mistakes) or None,
    )


def summarize(checks: list[Check], replays: list[tuple[int, int]], unit: units.Unit) -> tuple[bool, str]:
    """The unit's verdict over all replays: ok only if right on every one, else the most telling mistake."""
    if len(checks) != len(replays):
        raise ValueError(f"{unit.grade_id}: {len(checks)} checks for {len(replays)} replays")
    if all(c.ok for c in checks):
        return True, f"right on all {len(checks)} replays"
    by_batch = {}
    for check, (_, n) in zip(checks, replays):
        by_batch.setdefault(n == 32, []).append(check.ok)
    if all(by_batch.get(True, [False])) and not any(by_batch.get(False, [True])):
        return False, ("right when the batch has 32 examples but wrong for other batch sizes: "
                       "it looks like a literal 32 where the batch size n belongs")
    if replays[0] == NOTEBOOK_REPLAY and checks[0].ok:
        return False, ("right on the notebook's own batch but wrong on fresh ones: the answer looks "
                       "hard-coded to the notebook's run; compute it from the variables of the replay")
    failing = [(n != 32, i) for i, (c, (_, n)) in enumerate(zip(checks, replays)) if not c.ok]
    first = checks[min(failing)[1]]
    return False, first.mistake or "wrong"


# ---- diagnoses ----

def _fmt(shape: tuple[int, ...]) -> str:
    return str(tuple(shape))


def _close(a: np.ndarray, model: np.ndarray, ev: Evidence) -> bool:
    """Whether `a` follows `model` (a mistake built from the reference) up to rounding."""
    if a.shape != model.shape:
        return False
    bound = ATOL * ev.scale + DIAGNOSIS_RTOL * np.abs(model).max(initial=0.0)
    return bool(np.abs(a - model).max(initial=0.0) <= bound)


def _negligible(x: np.ndarray, ev: Evidence) -> bool:
    return bool(np.abs(x).max(initial=0.0) <= ATOL * ev.scale)


def _factors(n: int, bessel: bool) -> list[tuple[float, str]]:
    bessel_note = ": Bessel's correction, n vs n-1" if bessel else " (n vs n-1)"
    named = [(n, "n"), (1 / n, "1/n"), (n / (n - 1), "n/(n-1)"), ((n - 1) / n, "(n-1)/n"), (2.0, "2"), (0.5, "1/2")]
    out = []
    for value, label in named:
        note = bessel_note if "n-1" in label else ""
        out.append((value, f"off by a factor {label}{note}"))
        out.append((-value, f"the sign is flipped and it is off by a factor {label}{note}"))
    out.append((-1.0, "the sign is flipped"))
    return out


def _name_factor(c: float, n: int, bessel: bool) -> str | None:
    for value, words in _factors(n, bessel):
        if abs(c / value - 1) < DIAGNOSIS_RTOL:
            return words
    return None


def _fitted_factor(a: np.ndarray, direction: np.ndarray) -> float:
    return float((a * direction).sum() / (direction * direction).sum())


def _diagnose_values(a: np.ndarray, ev: Evidence, unit: units.Unit, var: str, mismatch: np.ndarray) -> str:
    ref, n = ev.reference, ev.n
    bessel = "bessel" in unit.tags
    if not _negligible(ref, ev):
        if _negligible(a, ev):
            return "zero everywhere: the gradient was allocated but nothing was added into it"
        c = _fitted_factor(a, ref)
        # c close to 1 is rounding or a local slip, not a factor: leave it to the diagnoses below
        if abs(c - 1) >= DIAGNOSIS_RTOL and _close(a, c * ref, ev):
            words = _name_factor(c, n, bessel)
            if words:
                return words
            return "off by a constant factor everywhere: look for a missing or extra constant"
    if ev.transposable and _close(a.T, ref, ev):
        return "transposed: the values are right but rows and columns are swapped"
    branch = _diagnose_branches(a, ev, var)
    if branch:
        return branch
    for words, model in ev.known_mistakes.items():
        if _close(a, model, ev):
            return words
    if ev.argmax_mask is not None and not (mismatch & ~ev.argmax_mask).any():
        where = ("wrong only where each row's logit is largest (the argmax positions)")
        if "logit_maxes" in ev.shares:
            where += ": look at the path through logit_maxes"
        return where
    rows = ""
    if mismatch.ndim == 2 and mismatch.any(axis=1).sum() < mismatch.shape[0]:
        rows = f" (in {int(mismatch.any(axis=1).sum())} of {mismatch.shape[0]} rows)"
    return f"values differ at {int(mismatch.sum())} of {mismatch.size} positions{rows}"


def _diagnose_branches(a: np.ndarray, ev: Evidence, var: str) -> str | None:
    """A variable used by several lines gets the sum of one share per use: is one share missing or off?"""
    consumers = [c for c, s in ev.shares.items() if not _negligible(s, ev)]
    if len(consumers) < 2:
        return None
    for missing in consumers:
        rest = ev.reference - ev.shares[missing]
        others = ", ".join(f"`{c}`" for c in ev.shares if c != missing)
        if _close(a, rest, ev):
            return (f"only the branch through {others} is there; `{var}` is also used by `{missing}`, "
                    f"and the gradients from both uses add up")
        c = _fitted_factor(a - rest, ev.shares[missing])
        if _close(a, rest + c * ev.shares[missing], ev):
            words = _name_factor(c, ev.n, bessel=False)
            if words:
                return f"the branch through `{missing}` is {words}; the other branch is right"
    return None


def _diagnose_shape(a: np.ndarray, ev: Evidence) -> str:
    ref = ev.reference
    wrong = f"shape {_fmt(a.shape)} instead of {_fmt(ref.shape)}"
    if a.size == 0 or not np.isfinite(a).all():
        return wrong
    if a.size == ref.size and _close(a.reshape(ref.shape), ref, ev):
        squeezed_ref = tuple(d for d in ref.shape if d != 1)
        if tuple(d for d in a.shape if d != 1) == squeezed_ref and len(a.shape) < len(ref.shape):
            return f"values right, {wrong}: keep the summed dimension (keepdim=True)"
        return f"values right, {wrong}: reshape it to the shape of the variable"
    if a.ndim == 2 and a.shape == ref.shape[::-1] and _close(a.T, ref, ev):
        return f"transposed: {wrong}; rows and columns are swapped"
    summed = _broadcast_axes(a.shape, ref.shape)
    if summed:
        total = a.sum(axis=summed, keepdims=True).reshape(ref.shape)
        axes = " and ".join(str(x) for x in summed)
        if _close(total, ref, ev):
            return (f"{wrong}: missing a sum over axis {axes} (broadcasting in the forward pass "
                    f"means a sum in the backward pass)")
        return f"{wrong}: the gradient of a broadcast variable is summed over axis {axes}"
    expected = _reduced_axes(ref.shape)
    if expected and a.shape == tuple(d for d in ref.shape if d != 1):
        return f"{wrong}: keep the summed dimension (keepdim=True); the values are off as well"
    if expected and a.ndim in (ref.ndim, ref.ndim - len(expected)) and _reduced_axes(a.shape) != expected:
        axes = " and ".join(str(x) for x in expected)
        return f"{wrong}: the sum should run over axis {axes}, the axis that was broadcast in the forward pass"
    return wrong


def _broadcast_axes(answer_shape: tuple[int, ...], ref_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Axes of the answer that the reference lacks (size 1 or missing) while every other dim agrees:
    the answer is the gradient of the broadcast result, not yet summed back."""
    if len(answer_shape) < len(ref_shape):
        return ()
    padded = (1,) * (len(answer_shape) - len(ref_shape)) + tuple(ref_shape)
    axes = tuple(i for i, (x, r) in enumerate(zip(answer_shape, padded)) if r == 1 and x != 1)
    agree = all(x == r for i, (x, r) in enumerate(zip(answer_shape, padded)) if i not in axes)
    return axes if axes and agree else ()


def _reduced_axes(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(i for i, d in enumerate(shape) if d == 1)
