"""Judge one answer against autograd's gradient; diagnose.py names the likely mistake.

numpy only (no torch): this runs in the grader process on the raw float64 arrays the child sent back.
The tolerance rule and its calibration are in docs/tolerances.md. Messages name a mistake, never a
reference value or expression: the only numbers in them are shapes, n, axes and counts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from backprop_ninja import diagnose

if TYPE_CHECKING:  # only for annotations: importing them would import torch
    from backprop_ninja import units
    from backprop_ninja.grade.evidence import Evidence

# |answer - reference| <= ATOL * scale + RTOL * |reference|, elementwise (docs/tolerances.md). The notebook's check
# uses the same rule (diagnose.ATOL), so it passes what the grader passes.
ATOL = diagnose.ATOL
RTOL = 0.0
# The same rule on the float64 replay, where the student's code runs in float64 (docs/tolerances.md#float64): an
# answer computed in float32 there (all its values are float32 numbers) is held to ATOL instead.
ATOL_FLOAT64 = 1e-10

NOTEBOOK_REPLAY = (2147483647, 32)


@dataclass
class Check:
    """The outcome of one unit on one replay."""

    ok: bool
    exact: bool                   # bit-exact against the reference cast to float32 (information only)
    max_diff: float | None        # None if the shapes differ or the answer is not finite
    mismatch: np.ndarray | None   # bool, reference's shape: where |answer - ref| > tol (None if shapes differ)
    mistake: str | None           # the diagnosis, a sentence for the student (None when ok)
    kind: str | None = None       # its class, a key of diagnose.MISTAKES (None when ok)
    near: bool = False            # wrong, but nowhere by more than NEAR_MISS times the tolerance
    size1_only: bool = False      # the shape differs only by size-1 dimensions, and the values are right


# An answer off by at most this many times the tolerance is "nearly right" on that replay: what decides it is then
# a replay built to expose near-misses (summarize).
NEAR_MISS = 10.0


# How messages name the replays built to expose near-misses (engine.SPECIAL_REPLAYS), by variant.
SPECIAL_WORDS = {
    "stress": "the stress replay (a batchnorm column of tiny variance, tied and large logits)",
    "float64": "the float64 replay (your code run in float64)",
    "stress64": ("the stress replay (a batchnorm column of tiny variance, tied and large logits; your code run in "
                 "float64)"),
}
FLOAT64_VARIANTS = ("float64", "stress64")  # model.IN_FLOAT64: replays on which the student's code runs in float64


def tolerance(ev: Evidence, answer: np.ndarray | None = None) -> np.ndarray:
    return _atol(ev, answer) * ev.scale + ev.relative_tolerance


def _atol(ev: Evidence, answer: np.ndarray | None) -> float:
    """ATOL_FLOAT64 on the float64 replay, unless the answer was computed in float32 there (`.float()`, a
    dtype=torch.float32): then it can only be as exact as float32, and the float32 replays judge it anyway."""
    if getattr(ev, "variant", "plain") not in FLOAT64_VARIANTS:
        return ATOL
    if answer is not None and _float32_numbers(answer):
        return ATOL
    return ATOL_FLOAT64


def _float32_numbers(a: np.ndarray) -> bool:
    """Whether every value is a float32 number: so the answer was computed in float32 (a float64 computation
    almost never lands on float32 numbers only, and where it does, e.g. -1/32, it is exact anyway)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.array_equal(a.astype(np.float32).astype(np.float64), a, equal_nan=True))


def check_answer(answer: np.ndarray, ev: Evidence, unit: units.Unit, name: str | None = None) -> Check:
    """Compare `answer` with the reference of `ev`; `name` (e.g. "dW1") prefixes the message."""
    a = np.asarray(answer, dtype=np.float64)
    ref = ev.reference
    var = name[1:] if name else unit.var
    prefix = f"{name}: " if name else ""

    if a.shape != ref.shape:
        found = diagnose.diagnose_shape(a, ref, ev.clues(), var)
        size1_only = (differs_by_size1_dims(a.shape, ref.shape) and bool(np.isfinite(a).all())
                      and bool((np.abs(a.reshape(ref.shape) - ref) <= tolerance(ev, a)).all()))
        return Check(False, False, None, None, prefix + found.message, found.kind, size1_only=size1_only)
    diff = np.abs(a - ref)
    within = diff <= tolerance(ev, a)  # False where the answer is NaN or infinite, too
    exact = bool(np.array_equal(a, ev.reference_in_float32))
    if within.all():  # most answers: the rest is for the wrong ones
        return Check(True, exact, float(diff.max(initial=0.0)), ~within, None)
    finite = np.isfinite(a)
    mismatch = ~finite | ~within
    max_diff = float(diff.max()) if finite.all() else None
    found = diagnose.diagnose_values(a, ref, ev.clues(), var, mismatch)
    message = _tiny_variance_words(~finite | (diff > ATOL * ev.scale), ev) or found.message
    near = bool(finite.all() and (diff <= NEAR_MISS * tolerance(ev, a)).all())
    return Check(False, exact, max_diff, mismatch, prefix + message, found.kind, near)


def _tiny_variance_words(mismatch: np.ndarray, ev: Evidence) -> str | None:
    """On the stress replay, an answer wrong only in the batchnorm column of tiny variance is (almost always)
    one that dropped the epsilon of bnvar_inv = (bnvar + eps)**-0.5: that only shows where bnvar is tiny.
    `mismatch` is judged at float32's tolerance, so on a replay in float64 the other columns' small slips
    (a few parts in a million, from the same missing epsilon) do not hide the pattern."""
    column = getattr(ev, "tiny_column", None)
    if column is None or mismatch.ndim == 0 or not mismatch[..., column].any():
        return None
    others = mismatch.copy()
    others[..., column] = False
    if others.any():
        return None
    return (f"far off in column {column}, the batchnorm column whose variance is tiny, and close elsewhere: is the "
            f"epsilon added to the variance in the forward pass (bnvar + eps) missing from your derivative?")


def differs_by_size1_dims(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether one shape is the other with some size-1 dimensions inserted, in order: (64,) and (1, 64), (n,) and
    (n, 1); not (64, 1) and (1, 64), which broadcast differently."""
    longer, shorter = (tuple(shape), tuple(target)) if len(shape) > len(target) else (tuple(target), tuple(shape))
    if len(longer) == len(shorter):
        return False
    rest = iter(shorter)
    expected = next(rest, None)
    for size in longer:
        if size == expected:
            expected = next(rest, None)
        elif size != 1:
            return False
    return expected is None


def merge_checks(checks: dict[str, Check]) -> Check:
    """One Check for several gradients of one replay (Exercise 4): ok only if all are."""
    diffs = [c.max_diff for c in checks.values()]
    ok = all(c.ok for c in checks.values())
    mistakes = [c.mistake for c in checks.values() if not c.ok and c.mistake]
    where = None if ok else diagnose.locate_in_chain({name: c.ok for name, c in checks.items()})
    return Check(
        ok=ok,
        exact=all(c.exact for c in checks.values()),
        max_diff=None if None in diffs else max(diffs, default=0.0),
        mismatch=None,
        mistake="; ".join(([where] if where else []) + mistakes) or None,
        kind=next((c.kind for c in checks.values() if not c.ok), None),
        near=not ok and all(c.ok or c.near for c in checks.values()),
    )


def summarize(checks: list[Check], replays: list[tuple[int, int]], unit: units.Unit) -> tuple[bool, str]:
    """The unit's verdict over all replays: ok only if right on every one, else the most telling mistake."""
    if len(checks) != len(replays):
        raise ValueError(f"{unit.grade_id}: {len(checks)} checks for {len(replays)} replays")
    if all(c.ok for c in checks):
        return True, f"right on all {len(checks)} replays"
    # The replays built to expose near-misses, (seed, n, variant), come last; the rules below read the others.
    ordinary = [i for i, r in enumerate(replays) if len(r) < 3]
    special_failed = any(not c.ok for c, r in zip(checks, replays) if len(r) > 2)
    if ordinary and special_failed and all(checks[i].ok or checks[i].near for i in ordinary):
        return False, _near_miss(checks, replays, all(checks[i].ok for i in ordinary))
    if ordinary:
        checks, replays = [checks[i] for i in ordinary], [replays[i] for i in ordinary]
    by_batch = {}
    for check, (_, n, *_) in zip(checks, replays):
        by_batch.setdefault(n == 32, []).append(check.ok)
    if all(by_batch.get(True, [False])) and not any(by_batch.get(False, [True])):
        return False, ("right when the batch has 32 examples but wrong for other batch sizes: "
                       "it looks like a literal 32 where the batch size n belongs")
    if replays[0] == NOTEBOOK_REPLAY and checks[0].ok:
        return False, ("right on the notebook's own batch but wrong on fresh ones: the answer looks "
                       "hard-coded to the notebook's run; compute it from the variables of the replay")
    failing = [(n != 32, i) for i, (c, (_, n, *_)) in enumerate(zip(checks, replays)) if not c.ok]
    first = checks[min(failing)[1]]
    return False, first.mistake or "wrong"


def _near_miss(checks: list[Check], replays: list[tuple], ordinary_right: bool) -> str:
    """Right, or off by little more than rounding, on every ordinary replay, and wrong on a replay built to expose
    near-misses: say so, name the special replays it fails, and what the first of them shows."""
    failed = [i for i, c in enumerate(checks) if not c.ok and len(replays[i]) > 2]
    where = " and on ".join(SPECIAL_WORDS.get(replays[i][2], "a special replay") for i in failed)
    on_ordinary = ("right on the ordinary replays" if ordinary_right
                   else "off by little more than rounding on the ordinary replays")
    first = checks[failed[0]]
    message = f"nearly right: {on_ordinary}, but wrong on {where}: {first.mistake or 'wrong'}"
    if "epsilon" not in message:  # the tiny-variance column's words already name the likely slip
        if replays[failed[0]][2] in FLOAT64_VARIANTS:
            message += ", by far more than float64 rounding"
        message += (". Look for a constant that is slightly off (an epsilon left out, a small term added, e.g. "
                    "inside an exp) or for float32 forced in the middle of the computation (.float())")
    return message
