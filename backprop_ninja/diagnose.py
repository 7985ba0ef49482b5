"""Name the likely mistake in a wrong gradient: one table of mistake classes, one function that picks one.

The grader (grade/compare.py) and the student's notebook both use this module: `backprop-ninja assign` writes its
source, as it is, into a generated cell of the notebook, where the notebook feeds it what it learns from autograd.
So it needs nothing but numpy and the standard library, imports nothing of the kit, and never names a formula of
the network: the models of mistakes it compares with are built by its callers, from the reference and from
autograd's share of each use of the variable. Messages name a mistake, never a value: the only numbers in them are
shapes, n, axes, counts and positions.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# The classes of mistakes, and what each means. Every diagnosis names one of them (`Diagnosis.kind`).
MISTAKES = {
    "not_finite": "the answer contains NaN or inf",
    "keepdim": "the values are right, but a summed dimension was dropped (keepdim=True missing)",
    "reshape": "the values are right, but the shape is not the variable's",
    "extra_dim": "a size-1 dimension the variable does not have (keepdim=True on the gradient of a 1-D parameter)",
    "transposed": "rows and columns are swapped",
    "missing_sum": "a broadcast in the forward pass was not summed back in the backward pass",
    "sum_axis": "summed over the wrong axis",
    "missing_broadcast": "size 1 along an axis the variable has: the gradient of a summed variable was not broadcast "
                         "back to its shape",
    "shape": "the shape is not the variable's",
    "zero": "zero everywhere",
    "sign": "the sign is flipped",
    "factor": "off by a named factor: n, 1/n, n/(n-1), (n-1)/n, 2 or 1/2, with or without a sign",
    "constant_factor": "off by some other constant factor",
    "missing_branch": "the variable is used twice, and one use's share is missing",
    "branch_factor": "one use's share is off by a factor or a sign",
    "forward_value": "a forward value stands where the gradient of a later line belongs",
    "forward_for_constant": "a forward value stands where a constant local derivative belongs",
    "plus_for_times": "the local derivative is added to the upstream gradient instead of multiplied (+ for *)",
    "offset": "off by the same amount everywhere (e.g. by 1: started from ones_like instead of zeros_like)",
    "other_gradient": "the answer equals the gradient of another variable",
    "missing_accumulation": "wrong only in the rows looked up more than once: their copies' gradients were written "
                            "over one another (an indexed = or +=) instead of added up",
    "argmax": "wrong only at the position of each row's maximum",
    "targets": "wrong only at the positions of the correct characters (Yb)",
    "location": "wrong in some rows or columns only, or in a pattern of positions",
    "differs": "the values differ, with no pattern found",
}

# How closely an answer must follow a model of a mistake (e.g. n times the reference) to be named after it,
# relative to the model's size. Loose, since it only picks the message; 1e-3 still tells n/(n-1) from 1 for every
# batch size the grader replays (n <= 50).
DIAGNOSIS_RTOL = 1e-3
# Below ATOL * scale, a difference is rounding (the grader's tolerance rule: docs/tolerances.md).
ATOL = 3e-5


@dataclass
class Clues:
    """What a diagnosis may compare the answer with, besides the reference (all float64 arrays).

    `shares`: for a variable used by several later lines, the share of the gradient that comes through each use
    (they add up to the reference). `paths`: the same for a one-go exercise, keyed by the line the path runs
    through (they add up to the reference too). `forward_swaps`: per use, the gradient computed with that line's
    forward value where its gradient belongs. `others`: the gradients of other variables of the same shape.
    `argmax`, `targets` and `repeated`: boolean masks of the reference's shape.
    """

    n: int
    scale: float                      # the magnitude the rounding tolerance is relative to
    bessel: bool = False              # a variance with n-1 is on the way: name n vs n-1 as Bessel's correction
    shares: dict = field(default_factory=dict)
    paths: dict = field(default_factory=dict)
    forward_swaps: dict = field(default_factory=dict)
    others: dict = field(default_factory=dict)
    argmax: object = None
    targets: object = None
    repeated: object = None           # a table indexed by Xb: True in the rows of indices used more than once


@dataclass
class Diagnosis:
    kind: str      # a key of MISTAKES
    message: str   # one sentence for the student


def diagnose_shape(answer, reference, clues: Clues, var: str = "") -> Diagnosis:
    """The answer's shape differs from the reference's: say how. `var` (e.g. "b1") names the variable."""
    a, ref = np.asarray(answer, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    wrong = f"shape {tuple(a.shape)} instead of {tuple(ref.shape)}"
    if a.size == 0 or not np.isfinite(a).all():
        return Diagnosis("shape", wrong)
    squeezed = tuple(d for d in a.shape if d != 1) == tuple(d for d in ref.shape if d != 1)
    if a.size == ref.size and _close(a.reshape(ref.shape), ref, clues):
        if squeezed and len(a.shape) < len(ref.shape):
            return Diagnosis("keepdim", f"values right, {wrong}: keep the summed dimension (keepdim=True)")
        if squeezed and len(a.shape) > len(ref.shape):
            return Diagnosis("extra_dim", f"values right, {wrong}: {_extra_dim_words(ref.shape, var)}")
        return Diagnosis("reshape", f"values right, {wrong}: reshape it to the shape of the variable")
    if squeezed and len(a.shape) > len(ref.shape):
        return Diagnosis("extra_dim", f"{wrong}: {_extra_dim_words(ref.shape, var)}; the values are off as well")
    if a.ndim == 2 and a.shape == ref.shape[::-1] and _close(a.T, ref, clues):
        return Diagnosis("transposed", f"transposed: {wrong}; rows and columns are swapped")
    summed = _broadcast_axes(a.shape, ref.shape)
    if summed:
        total = a.sum(axis=summed, keepdims=True).reshape(ref.shape)
        axes = " and ".join(str(x) for x in summed)
        if _close(total, ref, clues):
            return Diagnosis("missing_sum", f"{wrong}: missing a sum over axis {axes} (broadcasting in the "
                                            f"forward pass means a sum in the backward pass)")
        return Diagnosis("missing_sum", f"{wrong}: the gradient of a broadcast variable is summed over axis {axes}")
    expected = tuple(i for i, d in enumerate(ref.shape) if d == 1)
    if expected and a.shape == tuple(d for d in ref.shape if d != 1):
        return Diagnosis("keepdim", f"{wrong}: keep the summed dimension (keepdim=True); the values are off as well")
    if expected and a.ndim in (ref.ndim, ref.ndim - len(expected)) and \
            tuple(i for i, d in enumerate(a.shape) if d == 1) != expected:
        axes = " and ".join(str(x) for x in expected)
        return Diagnosis("sum_axis", f"{wrong}: the sum should run over axis {axes}, the axis that was broadcast "
                                     f"in the forward pass")
    spread = _collapsed_axes(a.shape, ref.shape)
    if spread:
        return Diagnosis("missing_broadcast", _collapsed_words(a, ref, spread, var, clues, wrong))
    return Diagnosis("shape", wrong)


def diagnose_values(answer, reference, clues: Clues, var: str = "", mismatch=None) -> Diagnosis:
    """The answer has the reference's shape but not its values: name the likely mistake.

    `mismatch` (bool, the reference's shape) marks the positions judged wrong; by default, those off by more
    than rounding.
    """
    a, ref = np.asarray(answer, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if mismatch is None:
        mismatch = ~np.isfinite(a) | (np.abs(a - ref) > ATOL * clues.scale)
    if not np.isfinite(a).all():
        what = "NaN" if np.isnan(a).any() else "inf"
        return Diagnosis("not_finite", f"contains {what} at {int((~np.isfinite(a)).sum())} of {a.size} positions: "
                                       f"look for a division by zero or a log/power of a non-positive number")
    if not _negligible(ref, clues):
        if _negligible(a, clues):
            return Diagnosis("zero", "zero everywhere: the gradient was allocated but nothing was added into it")
        c = _fitted_factor(a, ref)
        # c close to 1 is rounding or a local slip, not a factor: leave it to the diagnoses below
        if abs(c - 1) >= DIAGNOSIS_RTOL and _close(a, c * ref, clues):
            named = _name_factor(c, clues.n, clues.bessel)
            if named:
                return Diagnosis("sign" if named == _SIGN else "factor", named)
            return Diagnosis("constant_factor",
                             "off by a constant factor everywhere: look for a missing or extra constant")
    if ref.ndim == 2 and min(ref.shape) > 1 and _close(a.T, ref, clues):
        return Diagnosis("transposed", "transposed: the values are right but rows and columns are swapped")
    found = (_diagnose_parts(a, ref, clues.shares, clues, var, "branch")
             or _diagnose_parts(a, ref, clues.paths, clues, var, "path")
             or _diagnose_forward_swap(a, clues)
             or _diagnose_other_gradient(a, ref, clues, var)
             or _diagnose_offset(a, ref, clues)
             or _diagnose_plus_for_times(a, ref, clues)
             or _diagnose_forward_for_constant(a, ref, clues, mismatch))
    if found:
        return found
    # Where it is clearly off, not just past the rounding tolerance: a small slip everywhere (a constant slightly
    # off) crosses the tolerance only where the values are large, which is no place to point at.
    clearly = mismatch & (np.abs(a - ref) > DIAGNOSIS_RTOL * np.abs(ref) + ATOL * clues.scale)
    if not clearly.any():
        return Diagnosis("differs", f"values differ at {int(mismatch.sum())} of {mismatch.size} positions, each by "
                                    f"less than a thousandth of its size: look for a constant slightly off")
    return locate(clearly, clues)


def locate(mismatch, clues: Clues) -> Diagnosis:
    """Where the wrong positions are: at the argmax or the targets, in some rows or columns, on the diagonal."""
    mismatch = np.asarray(mismatch, dtype=bool)
    if _mask_fits(clues.argmax, mismatch) and mismatch.any() and not (mismatch & ~np.asarray(clues.argmax)).any():
        return Diagnosis("argmax", "wrong only where each row's logit is largest (the argmax positions)"
                         + (": look at the path through logit_maxes" if "logit_maxes" in clues.shares else ""))
    if _mask_fits(clues.targets, mismatch) and mismatch.any() and not (mismatch & ~np.asarray(clues.targets)).any():
        return Diagnosis("targets", "wrong only at the positions of the correct characters (column Yb of each "
                                    "row): look at how the loss picks one entry per row")
    if _mask_fits(clues.repeated, mismatch) and mismatch.any() and not (mismatch & ~np.asarray(clues.repeated)).any():
        return Diagnosis("missing_accumulation", _REPEATED_ROWS_WORDS)
    wrong = f"values differ at {int(mismatch.sum())} of {mismatch.size} positions"
    if mismatch.ndim != 2 or not mismatch.any():
        return Diagnosis("differs", wrong)
    rows, cols = mismatch.any(axis=1), mismatch.any(axis=0)
    n_rows, n_cols = mismatch.shape
    if mismatch.sum() == 1:
        return Diagnosis("location", f"{wrong} (row {int(np.argmax(rows))}, column {int(np.argmax(cols))})")
    if n_rows == n_cols and n_rows > 1 and not (mismatch & ~np.eye(n_rows, dtype=bool)).any():
        return Diagnosis("location", f"{wrong}, all on the diagonal")
    if cols.sum() == 1 and n_cols > 1:
        return Diagnosis("location", f"wrong only in column {int(np.argmax(cols))} (of {n_cols}); the other "
                                     f"columns are right")
    if rows.sum() == 1 and n_rows > 1:
        return Diagnosis("location", f"wrong only in row {int(np.argmax(rows))} (of {n_rows}); the other "
                                     f"rows are right")
    if cols.sum() < n_cols and cols.sum() / n_cols <= rows.sum() / n_rows:
        return Diagnosis("location", f"wrong in {int(cols.sum())} of {n_cols} columns, right in the other "
                                     f"{int(n_cols - cols.sum())}")
    if rows.sum() < n_rows:
        return Diagnosis("location", f"wrong in {int(rows.sum())} of {n_rows} rows, right in the other "
                                     f"{int(n_rows - rows.sum())}")
    return Diagnosis("differs", wrong)


# The stretches of the chain Exercise 4's gradients come from, from the loss back: the gradients each stretch
# feeds, and where a mistake sits if they are the first wrong ones.
CHAIN = (
    (("dW2", "db2"), "between the loss and logits (the cross-entropy backward)"),
    (("dbngain", "dbnbias"), "between logits and hpreact (through W2 and the tanh)"),
    (("dW1", "db1"), "between hpreact and hprebn (the batchnorm backward)"),
    (("dC",), "between hprebn and C (through W1, embcat and the embedding lookup)"),
)


def locate_in_chain(right: dict) -> str:
    """One sentence for Exercise 4: which returned gradients are right, which are wrong, and where the first
    mistake sits along the chain. `right` maps each gradient's name (dC, dW1, ...) to whether it is right."""
    order = [name for names, _ in CHAIN for name in names]
    good = [name for name in order if right.get(name)]
    bad = [name for name in order if name in right and not right[name]]
    if not bad:
        return "all gradients are right"
    head = (f"{', '.join(good)} {'is' if len(good) == 1 else 'are'} right; " if good else "") + \
        f"{', '.join(bad)} {'is' if len(bad) == 1 else 'are'} wrong"
    for names, where in CHAIN:
        wrong_here = [name for name in names if name in bad]
        if not wrong_here:
            continue
        later = [name for stretch, _ in CHAIN[CHAIN.index((names, where)) + 1:] for name in stretch]
        if len(wrong_here) == len(names) or any(name in bad for name in later):
            return f"{head}: the first mistake is {where}"
        return f"{head}: look at the line that computes {wrong_here[0]} itself"
    return head


# ---- the pieces ----

# Why repeated rows go wrong: `t[idx] += x` is t[idx] = t[idx] + x, one gather and one scatter, so a row listed twice
# is written twice with its old value plus one copy's share: it does not accumulate, any more than `t[idx] = x` does.
_REPEATED_ROWS_WORDS = (
    "wrong only in the rows of characters that appear more than once in the batch, which must add up the gradients "
    "of all their copies. Through an index tensor, += keeps only one copy per row, just as = does (`t[idx] += x` is "
    "`t[idx] = t[idx] + x`, so the copies of a repeated row overwrite one another): use index_add_ (or index_put_ "
    "with accumulate=True), or a loop that adds one position at a time")

_SIGN = "the sign is flipped"


def _close(a, model, clues: Clues) -> bool:
    """Whether `a` follows `model` (a mistake built from the reference) up to rounding."""
    model = np.asarray(model, dtype=np.float64)
    if a.shape != model.shape:
        return False
    bound = ATOL * clues.scale + DIAGNOSIS_RTOL * np.abs(model).max(initial=0.0)
    return bool(np.abs(a - model).max(initial=0.0) <= bound)


def _mask_fits(mask, mismatch) -> bool:
    return mask is not None and np.shape(mask) == mismatch.shape


def _negligible(x, clues: Clues) -> bool:
    return bool(np.abs(np.asarray(x)).max(initial=0.0) <= ATOL * clues.scale)


def _factors(n: int, bessel: bool):
    bessel_note = ": Bessel's correction, n vs n-1" if bessel else " (n vs n-1)"
    named = [(n, "n"), (1 / n, "1/n"), (n / (n - 1), "n/(n-1)"), ((n - 1) / n, "(n-1)/n"), (2.0, "2"), (0.5, "1/2")]
    out = []
    for value, label in named:
        note = bessel_note if "n-1" in label else ""
        out.append((value, f"off by a factor {label}{note}"))
        out.append((-value, f"the sign is flipped and it is off by a factor {label}{note}"))
    out.append((-1.0, _SIGN))
    return out


def _name_factor(c: float, n: int, bessel: bool):
    for value, words in _factors(n, bessel):
        if abs(c / value - 1) < DIAGNOSIS_RTOL:
            return words
    return None


def _fitted_factor(a, direction) -> float:
    return float((a * direction).sum() / (direction * direction).sum())


def _diagnose_parts(a, ref, parts: dict, clues: Clues, var: str, what: str):
    """A gradient that is a sum of parts (one per use of the variable, or one per path): is one part missing, or
    off by a factor or a sign, while the others are right?"""
    live = [name for name, part in parts.items() if not _negligible(part, clues)]
    if len(live) < 2:
        return None
    for missing in live:
        part = np.asarray(parts[missing], dtype=np.float64)
        rest = ref - part
        if _close(a, rest, clues):
            if what == "branch":
                others = ", ".join(f"`{c}`" for c in parts if c != missing)
                return Diagnosis("missing_branch", f"only the branch through {others} is there; `{var}` is also "
                                                   f"used by `{missing}`, and the gradients from both uses add up")
            via = _branch_of_path(part, clues) if missing not in clues.shares else None
            if via:
                return Diagnosis("missing_branch", f"part of the branch through `{via}` is missing: the share that "
                                                   f"flows on through `{missing}`, which does not use `{var}` itself "
                                                   f"but reaches it inside the gradient of `{via}`; every path from "
                                                   f"`{var}` to the loss adds its share")
            return Diagnosis("missing_branch", f"the path through `{missing}` is missing: every path from "
                                               f"`{var}` to the loss adds its share")
        c = _fitted_factor(a - rest, part)
        if _close(a, rest + c * part, clues):
            words = _name_factor(c, clues.n, clues.bessel and what == "path")
            if words:
                through = f"the branch through `{missing}`" if what == "branch" else f"the path through `{missing}`"
                rest_words = "the other branch is right" if what == "branch" else "the other paths are right"
                if words.startswith(_SIGN):  # "the branch ... has its sign flipped and is off by a factor 2"
                    words = "has its sign flipped" + words[len(_SIGN):].replace(" and it is ", " and is ")
                else:
                    words = f"is {words}"
                return Diagnosis("branch_factor", f"{through} {words}; {rest_words}")
    return None


def _branch_of_path(part, clues: Clues):
    """The one use of the variable a path runs through, when the numbers can tell: a use that reduced the variable
    along an axis (a mean, a sum) sends back a share that is the same all along that axis, and so does every path
    through it. So a path that varies along such an axis runs through another use; None unless one use is left."""
    part = np.asarray(part, dtype=np.float64)
    fits = []
    for user, share in clues.shares.items():
        share = np.asarray(share, dtype=np.float64)
        if share.shape != part.shape or _negligible(share, clues):
            continue
        reduced = [axis for axis in range(share.ndim) if share.shape[axis] > 1 and _constant_along(share, axis, clues)]
        if all(_constant_along(part, axis, clues) for axis in reduced):
            fits.append(user)
    return fits[0] if len(fits) == 1 else None


def _diagnose_forward_swap(a, clues: Clues):
    for consumer, model in clues.forward_swaps.items():
        if _close(a, model, clues):
            return Diagnosis("forward_value", f"it uses the forward value `{consumer}` where its gradient "
                                              f"`d{consumer}` belongs")
    return None


def _diagnose_other_gradient(a, ref, clues: Clues, var: str):
    for name, grad in clues.others.items():
        # a gradient equal to this one (dnorm_logits and dlogits, up to the ~0 branch through logit_maxes) says
        # nothing about the answer
        if name == var or _negligible(grad, clues) or _close(np.asarray(grad, dtype=np.float64), ref, clues):
            continue
        if _close(a, grad, clues):
            return Diagnosis("other_gradient", _other_gradient_words(name, var, list(clues.shares)))
    return None


def _other_gradient_words(name: str, var: str, users: list) -> str:
    """The answer has the values of d<name>. If <name> uses <var>, one step back through that line is missing;
    otherwise the values only coincide (probs * dprobs is dlogprobs, since probs times 1/probs is 1), and what is
    wrong is where the answer starts from: not from the gradient of the line(s) that use <var>."""
    if name in users or not users or "loss" in users:
        return (f"it equals the gradient of `{name}` (d{name}), not of `{var}`: take one more step back, through the "
                f"line that uses `{var}`")
    lines = " and ".join(f"`{u}`" for u in users)
    grads = " and ".join(f"d{u}" for u in users)
    return (f"it equals the gradient of `{name}` (d{name}), and `{name}` is not a line that uses `{var}`, so the "
            f"values only coincide: the gradient of `{var}` comes through {lines}, the "
            f"line{'s' if len(users) > 1 else ''} that use{'' if len(users) > 1 else 's'} it. Start from {grads} and "
            f"multiply by the local derivative of {'each' if len(users) > 1 else 'that'} line")


def _extra_dim_words(shape, var: str) -> str:
    """Why a gradient has exactly its variable's shape, for an answer that keeps a size-1 dimension too many."""
    name = f"`{var}`" if var else "the variable"
    what = "a vector" if len(shape) == 1 else f"{len(shape)}-D"
    return (f"{name} has shape {tuple(shape)}, {what}, so its gradient has that shape too; keepdim=True keeps a "
            f"dimension that {name} does not have")


def _diagnose_offset(a, ref, clues: Clues):
    """Off by the same amount at every position: a gradient started from ones (ones_like) instead of zeros, say."""
    shift = a - ref
    c = float(shift.mean())
    if a.size < 2 or abs(c) <= ATOL * clues.scale:
        return None
    if np.abs(shift - c).max(initial=0.0) > ATOL * clues.scale + DIAGNOSIS_RTOL * abs(c):
        return None
    if abs(abs(c) - 1) < DIAGNOSIS_RTOL:
        how = "one too large" if c > 0 else "one too small"
        return Diagnosis("offset", f"every entry is {how}: was the gradient started from ones (ones_like) where "
                                   f"it should start from zeros, before the uses are added into it?")
    return Diagnosis("offset", "every entry is off by the same amount: look for a constant added to (or "
                               "subtracted from) the whole gradient")


def _diagnose_plus_for_times(a, ref, clues: Clues):
    """A use whose upstream gradient was added to the local derivative instead of multiplying it:
    answer = rest + (local + upstream) where the reference is rest + local * upstream. The upstream is the
    consumer's gradient, found among `others` when it has the answer's shape (an elementwise line); the check is
    (answer - rest - upstream) * upstream == share, position by position."""
    for consumer, share in clues.shares.items():
        upstream = clues.others.get(consumer)
        if upstream is None or np.shape(upstream) != a.shape or _negligible(upstream, clues):
            continue
        up, share = np.asarray(upstream, dtype=np.float64), np.asarray(share, dtype=np.float64)
        local = a - (ref - share) - up
        bound = ATOL * clues.scale + DIAGNOSIS_RTOL * np.abs(share)
        if (np.abs(local * up - share) <= bound).all():
            return Diagnosis("plus_for_times", f"the local derivative is added to the upstream gradient "
                                               f"`d{consumer}` where the chain rule multiplies them (+ written "
                                               f"for *)")
    return None


def _diagnose_forward_for_constant(a, ref, clues: Clues, mismatch):
    """The local derivative is a constant (the reference is the same along an axis: each row is the upstream
    times one number), but the answer changes along that axis at every row and column: a forward value of the
    line (its input, say) stands where the constant belongs."""
    wrong = np.asarray(mismatch, dtype=bool)
    if ref.ndim != 2 or wrong.shape != ref.shape or _negligible(ref, clues):
        return None
    if not (wrong.any(axis=1).all() and wrong.any(axis=0).all()):
        return None  # wrong in some rows or columns only: where it is off says more (locate)
    for axis, along in ((0, "row"), (1, "column")):
        if ref.shape[axis] < 2 or not _constant_along(ref, axis, clues) or _constant_along(a, axis, clues):
            continue
        return Diagnosis("forward_for_constant", f"the local derivative of this line is a constant, the same in "
                                                 f"every {along}, but your answer changes from {along} to {along}: "
                                                 f"a forward value seems to stand where that constant belongs")
    return None


def _constant_along(x, axis: int, clues: Clues) -> bool:
    first = np.take(x, [0], axis=axis)
    return bool(np.abs(x - first).max(initial=0.0) <= ATOL * clues.scale + DIAGNOSIS_RTOL * np.abs(first).max())


def _collapsed_axes(answer_shape, ref_shape):
    """Axes where the reference is longer than 1 but the answer has size 1 (or lacks the axis), all other sizes
    agreeing: a (1, 64) answer for an (n, 64) variable, as the gradient of a line that summed it would be."""
    if len(answer_shape) > len(ref_shape):
        return ()
    padded = (1,) * (len(ref_shape) - len(answer_shape)) + tuple(answer_shape)
    axes = tuple(i for i, (x, r) in enumerate(zip(padded, ref_shape)) if x == 1 and r != 1)
    agree = all(x == r for i, (x, r) in enumerate(zip(padded, ref_shape)) if i not in axes)
    return axes if axes and agree else ()


def _collapsed_words(a, ref, axes, var: str, clues: Clues, wrong: str) -> str:
    """Why the gradient needs the full shape, for an answer that collapsed `axes` of the variable to size 1."""
    name = f"`{var}`" if var else "the variable"
    along = " and ".join(str(x) for x in axes)
    why = (f"{name} has shape {tuple(ref.shape)}, so its gradient has that shape too, one number for each entry "
           f"(each entry changes the loss on its own). A sum in the forward pass is a broadcast in the backward pass: "
           f"every entry a line adds up gets the gradient of the total")
    padded = a.reshape((1,) * (ref.ndim - a.ndim) + a.shape)
    if _close(np.broadcast_to(padded, ref.shape), ref, clues):
        return f"values right, {wrong}: {why}, so your values belong at every position along axis {along}"
    return f"{wrong}: {why}, at every position along axis {along}; the values are off as well"


def _broadcast_axes(answer_shape, ref_shape):
    """Axes of the answer that the reference lacks (size 1 or missing) while every other dim agrees: the answer is
    the gradient of the broadcast result, not yet summed back."""
    if len(answer_shape) < len(ref_shape):
        return ()
    padded = (1,) * (len(answer_shape) - len(ref_shape)) + tuple(ref_shape)
    axes = tuple(i for i, (x, r) in enumerate(zip(answer_shape, padded)) if r == 1 and x != 1)
    agree = all(x == r for i, (x, r) in enumerate(zip(answer_shape, padded)) if i not in axes)
    return axes if axes and agree else ()
