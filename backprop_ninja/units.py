"""The table of graded units: one row per gradient the student writes.

Like micrograd, each row puts a forward line next to its backward: for every consumer of the
variable (the later line that reads it) a local backward that turns the consumer's gradient into
this variable's share. The full gradient is the sum of those shares. Autograd stays the reference;
the kit's tests check that the shares add up to it, and the diagnostics use single shares to
recognise a missing branch ("a variable used twice accumulates").

Everything else reads this table: the grader, the hidden tests, the notebook's summary, the docs.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

Share = Callable[[object], torch.Tensor]  # v (float64 values and reference gradients) -> tensor


@dataclass(frozen=True)
class Unit:
    var: str                      # the variable whose gradient is asked for ("" for Exercise 4)
    exercise: int
    forward: str                  # the forward line that made `var` ("parameter" for parameters)
    shares: dict[str, Share]      # consumer -> this variable's share of the gradient
    points: int = 1
    forbidden: tuple[str, ...] = ()  # functions that would answer this exercise for the student
    tags: frozenset[str] = field(default_factory=frozenset)  # extra diagnostics to try
    # The second rung of the hint ladder, beside each share: consumer -> that consumer's local
    # derivative, in words and in plain-text math (never code). Keys are exactly `consumers`;
    # Exercise 4, which has no consumers, has one general hint under the key "" (EX4_HINT_KEY).
    hints: dict[str, str] = field(default_factory=dict)
    # consumer -> the dimensions along which that consumer stretched (broadcast) this variable,
    # written "dim 0", "dim 1" (or "dims 0, 1"), counted in the consumer's shape: the share sums the
    # gradient over them, keeping a summed dim as size 1 where the variable has it ((1, 64), (n, 1))
    # and dropping it where the variable lacks it ((27,) against (n, 27)). A consumer
    # that does not broadcast the variable is absent, so {} when no consumer does.
    broadcast: dict[str, str] = field(default_factory=dict)
    # the variable's shape as the student sees it, n being the batch size: "(n, 27)", "(1, 64)",
    # "(27,)"; "" for Exercise 4. SHAPES below adds the loss, "()".
    shape: str = ""
    # For a one-go exercise, the lines its gradient also flows through on the way from the loss: the diagnosis
    # splits the gradient into one path per line (autograd's share through it) plus the direct rest, to say which
    # path is missing or off (diagnose.py).
    paths: tuple[str, ...] = ()
    # Why this gradient is exactly 0 on every input ("" when it is not): an answer that skips its rule, flips its
    # sign or writes zeros, and a branch that leaves it out as an upstream, still match the reference. The rule
    # probe (grade/probe.py) catches such answers and explains them with this sentence.
    zero_because: str = ""
    # For a one-go exercise, the names its cell may read from the notebook (grade/one_go.py): any other tensor of
    # the forward pass, or gradient, is Exercise 1's chain, which the exercise is there to replace.
    gives: tuple[str, ...] = ()
    # The first rung of the hint ladder. Exercise 1: consumer -> the kind of backward rule that line calls for, a key
    # of RULES (filled with "entrywise" for a consumer not named). Exercises 2 to 4: `overview`, the one-go view of
    # the exercise in place of per-line rules. Like `hints`, never the answer.
    rule_kinds: dict[str, str] = field(default_factory=dict)
    overview: str = ""

    @functools.cached_property  # read thousands of times per grading
    def grade_id(self) -> str:
        return f"ex{self.exercise}_{self.var or 'backward'}"

    @property
    def test_id(self) -> str:
        return f"test_{self.grade_id}"

    @functools.cached_property
    def answer(self) -> str:
        """The name the student's cell must define."""
        return f"d{self.var}" if self.var else "manual_backward"

    @property
    def consumers(self) -> tuple[str, ...]:
        return tuple(self.shares)


def _one_hot(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.one_hot(index, num_classes=like.shape[1]).to(like.dtype)


def _unit(var, forward, points=1, exercise=1, forbidden=(), tags=(), *, shape, hints, broadcast=None, paths=(),
          zero_because="", gives=(), rule_kinds=None, overview="", **shares) -> Unit:
    broadcast = dict(broadcast or {})
    if set(hints) != set(shares) or not set(broadcast) <= set(shares):
        raise ValueError(f"{var}: hints must name exactly the consumers {sorted(shares)}, broadcast a subset")
    kinds = {} if overview else {c: (rule_kinds or {}).get(c, "entrywise") for c in shares}
    if not set(rule_kinds or {}) <= set(shares) or not set(kinds.values()) <= set(PER_LINE_RULES):
        raise ValueError(f"{var}: rule_kinds must map some of the consumers {sorted(shares)} to PER_LINE_RULES")
    return Unit(var, exercise, forward, shares, points, tuple(forbidden), frozenset(tags),
                dict(hints), broadcast, shape, tuple(paths), zero_because, tuple(gives), kinds, overview)


# The first rung of the hint ladder for Exercise 1: where a gradient comes from and which rule of backpropagation
# applies, as general rules that never name the gradient flowing in (the tutor prints the lines themselves). The
# tutor fills in {var} (the variable), {consumer} and {line} (one line that uses it), {count} (how many lines do),
# {dims} and {shape} (a broadcast: the stretched dimensions and the variable's shape). The per-line kinds are the
# values of `rule_kinds`; the last three apply on top of them.
RULES: dict[str, str] = {
    "loss": (
        "`{line}` is the loss itself, where the backward pass starts: the gradient of the loss with respect to "
        "itself is 1, so d{var} is just the local derivative of this line with respect to {var}. The line reads "
        "some entries of {var} by indexing; an entry it never reads cannot move the loss."),
    "entrywise": (
        "Rule (entry by entry): in `{line}` each entry of {consumer} is made from one entry of {var} (and from "
        "other tensors), so the chain rule works entry by entry: at every place, the local derivative there times "
        "the gradient that comes back to {consumer} at that place."),
    "matmul": (
        "Rule (matrix product): in `{line}`, {var} is a factor of a matrix product. The gradient of a factor is "
        "again a matrix product: of the gradient that comes back to the product with the transpose of the other "
        "factor. Which one goes on the left, the shapes decide: only one order gives the shape of {var}."),
    "sum": (
        "Rule (a sum): `{line}` adds up entries of {var}, perhaps scaled by a constant. A sum hands the gradient of "
        "its result, times that constant, to every entry it added: copy it back out along the summed dimension."),
    "max": (
        "Rule (a maximum): `{line}` keeps the largest entry of each row of {var} and ignores the others. A maximum "
        "hands its gradient to the entry that won, and nothing to the others."),
    "reshape": (
        "Rule (a reshape): `{line}` holds the very numbers of {var}, only arranged in another shape. Nothing is "
        "computed, so the gradient is the same numbers, arranged back."),
    "lookup": (
        "Rule (indexing, a lookup): `{line}` copies rows of {var} by index. Each copy sends its gradient back to the "
        "row it came from; a row copied several times is used several times, so its gradients add, and a row never "
        "copied gets zeros. Careful: when an index repeats, one indexed `+=` keeps only one of the repeats, so add "
        "position by position (a loop is fine) or with a function that accumulates repeated indices."),
    "used_once": "Rule: only this line uses {var}, so all of d{var} comes back through it.",
    "used_twice": (
        "Rule (used {count} times): each of these lines sends {var} a contribution of its own, and the "
        "contributions add up. Work them out one line at a time: d{var} = ... for the first, then d{var} += ... for "
        "each other one. If the first is another gradient passed on unchanged, copy it (`.clone()`) before adding "
        "to it: `+=` changes a tensor in place, and without the copy it would change that other gradient too."),
    "broadcast": (
        "Rule (broadcast): `{line}` stretches {var}: the same entry of {var} is used in many places, so this line's "
        "contribution is summed over the stretched dimensions ({dims}), and d{var} keeps the shape of {var}, "
        "{shape}."),
}
PER_LINE_RULES = ("loss", "entrywise", "matmul", "sum", "max", "reshape", "lookup")  # the kinds `rule_kinds` uses


# Exercise 1, in the order the student meets them: from the loss back to the embedding table.
# Each row: the variable, its forward line, its shape, then one share per consumer, with beside it
# the hint for that consumer (its local derivative, in words and in math) and, where the consumer
# stretched the variable along some dimensions, which ones (the share sums over them).
EXERCISE_1 = (
    _unit("logprobs", "logprobs = probs.log()", shape="(n, 27)", rule_kinds=dict(loss="loss"),
          loss=lambda v: -_one_hot(v.Yb, v.logprobs) / v.n,
          hints=dict(loss=(
              "The loss is minus the mean of n entries of logprobs, one from each row: loss = −(x_1 + … + x_n)/n, "
              "each x_i being one entry. The derivative of −(x_1 + … + x_n)/n with respect to any one x_i is −1/n, "
              "and with respect to a number that is not among the x_i there is nothing to differentiate."))),
    _unit("probs", "probs = counts * counts_sum_inv", shape="(n, 27)",
          logprobs=lambda v: v.dlogprobs / v.probs,
          hints=dict(logprobs=(
              "logprobs_ij = log(probs_ij), and d/dx log x = 1/x. So ∂logprobs_ij/∂probs_ij = 1/probs_ij, and "
              "an entry of logprobs does not depend on any other entry of probs."))),
    _unit("counts_sum_inv", "counts_sum_inv = counts_sum**-1", shape="(n, 1)",
          probs=lambda v: (v.counts * v.dprobs).sum(1, keepdim=True),
          hints=dict(probs=(
              "probs_ij = counts_ij · counts_sum_inv_i is a product, and the derivative of a product with "
              "respect to one factor is the other factor: ∂probs_ij/∂counts_sum_inv_i = counts_ij, for each of "
              "the 27 columns j of row i.")),
          broadcast=dict(probs="dim 1")),
    _unit("counts_sum", "counts_sum = counts.sum(1, keepdim=True)", shape="(n, 1)",
          counts_sum_inv=lambda v: -v.counts_sum**-2 * v.dcounts_sum_inv,
          hints=dict(counts_sum_inv=(
              "counts_sum_inv = counts_sum^(−1), and the power rule gives d/dx x^(−1) = −x^(−2). So "
              "∂counts_sum_inv_i/∂counts_sum_i = −counts_sum_i^(−2), row by row."))),
    _unit("counts", "counts = norm_logits.exp()", shape="(n, 27)", rule_kinds=dict(counts_sum="sum"),
          probs=lambda v: v.counts_sum_inv * v.dprobs,
          counts_sum=lambda v: torch.ones_like(v.counts) * v.dcounts_sum,
          hints=dict(
              probs=(
                  "probs_ij = counts_ij · counts_sum_inv_i, so ∂probs_ij/∂counts_ij = counts_sum_inv_i: the other "
                  "factor, one number per row, the same for all 27 columns of row i."),
              counts_sum=(
                  "counts_sum_i = counts_i1 + … + counts_i27, so ∂counts_sum_i/∂counts_ij = 1 for every column j "
                  "of row i; the sum of another row does not depend on it."))),
    _unit("norm_logits", "norm_logits = logits - logit_maxes", shape="(n, 27)",
          counts=lambda v: v.counts * v.dcounts,
          hints=dict(counts=(
              "counts_ij = e^(norm_logits_ij), and the exponential is its own derivative: d/dx e^x = e^x. So "
              "∂counts_ij/∂norm_logits_ij = e^(norm_logits_ij), a number the forward pass has already computed "
              "under another name."))),
    _unit("logit_maxes", "logit_maxes = logits.max(1, keepdim=True).values", shape="(n, 1)",
          norm_logits=lambda v: -v.dnorm_logits.sum(1, keepdim=True),
          hints=dict(norm_logits=(
              "norm_logits_ij = logits_ij − logit_maxes_i, so ∂norm_logits_ij/∂logit_maxes_i = −1, for each of "
              "the 27 columns j of row i. Expect a gradient very close to zero: shifting a whole row of logits by "
              "one number leaves the probabilities as they are, so it cannot change the loss; that is why "
              "subtracting the maximum (done for numerical safety) is allowed at all.")),
          broadcast=dict(norm_logits="dim 1"),
          zero_because="softmax ignores a shift of a row, so the row's maximum cannot change the loss"),
    _unit("logits", "logits = h @ W2 + b2", tags=("argmax",), shape="(n, 27)", rule_kinds=dict(logit_maxes="max"),
          norm_logits=lambda v: v.dnorm_logits.clone(),
          logit_maxes=lambda v: _one_hot(v.logits.argmax(1), v.logits) * v.dlogit_maxes,
          hints=dict(
              norm_logits=(
                  "norm_logits_ij = logits_ij − logit_maxes_i, so ∂norm_logits_ij/∂logits_ij = 1 (along this "
                  "line; the maximum is the other line's business)."),
              logit_maxes=(
                  "logit_maxes_i = max over j of logits_ij. A maximum depends only on the entry that attains it: "
                  "∂logit_maxes_i/∂logits_ij = 1 when column j holds the maximum of row i, and 0 for the other 26 "
                  "columns."))),
    _unit("h", "h = torch.tanh(hpreact)", shape="(n, 64)", rule_kinds=dict(logits="matmul"),
          logits=lambda v: v.dlogits @ v.W2.T,
          hints=dict(logits=(
              "logits_ik = Σ_j h_ij W2_jk + b2_k, so ∂logits_ik/∂h_ij = W2_jk, for every column k: one entry "
              "h_ij reaches all 27 entries of row i of logits, each through another weight."))),
    _unit("W2", "parameter", shape="(64, 27)", rule_kinds=dict(logits="matmul"),
          logits=lambda v: v.h.T @ v.dlogits,
          hints=dict(logits=(
              "logits_ik = Σ_j h_ij W2_jk + b2_k, so ∂logits_ik/∂W2_jk = h_ij, for every row i: one weight W2_jk "
              "is used by all n examples of the batch."))),
    _unit("b2", "parameter", shape="(27,)",
          logits=lambda v: v.dlogits.sum(0),
          hints=dict(logits=(
              "logits_ik = (h W2)_ik + b2_k, so ∂logits_ik/∂b2_k = 1, for every row i: an added bias passes "
              "gradient through, and the same b2_k is added in all n rows.")),
          broadcast=dict(logits="dim 0")),
    _unit("hpreact", "hpreact = bngain * bnraw + bnbias", shape="(n, 64)",
          h=lambda v: (1.0 - v.h**2) * v.dh,
          hints=dict(h=(
              "h_ij = tanh(hpreact_ij), and d/dx tanh x = 1 − tanh² x. So ∂h_ij/∂hpreact_ij = "
              "1 − tanh²(hpreact_ij), and the forward pass has already computed tanh(hpreact) under another "
              "name."))),
    _unit("bngain", "parameter", shape="(1, 64)",
          hpreact=lambda v: (v.bnraw * v.dhpreact).sum(0, keepdim=True),
          hints=dict(hpreact=(
              "hpreact_ij = bngain_j · bnraw_ij + bnbias_j, so ∂hpreact_ij/∂bngain_j = bnraw_ij, for every row "
              "i: the other factor of the product.")),
          broadcast=dict(hpreact="dim 0")),
    _unit("bnbias", "parameter", shape="(1, 64)",
          hpreact=lambda v: v.dhpreact.sum(0, keepdim=True),
          hints=dict(hpreact=(
              "hpreact_ij = bngain_j · bnraw_ij + bnbias_j, so ∂hpreact_ij/∂bnbias_j = 1, for every row i: an "
              "added bias passes gradient through.")),
          broadcast=dict(hpreact="dim 0")),
    _unit("bnraw", "bnraw = bndiff * bnvar_inv", shape="(n, 64)",
          hpreact=lambda v: v.bngain * v.dhpreact,
          hints=dict(hpreact=(
              "hpreact_ij = bngain_j · bnraw_ij + bnbias_j, so ∂hpreact_ij/∂bnraw_ij = bngain_j: the other factor "
              "of the product, one number per column."))),
    _unit("bnvar_inv", "bnvar_inv = (bnvar + 1e-5) ** -0.5", shape="(1, 64)",
          bnraw=lambda v: (v.bndiff * v.dbnraw).sum(0, keepdim=True),
          hints=dict(bnraw=(
              "bnraw_ij = bndiff_ij · bnvar_inv_j, so ∂bnraw_ij/∂bnvar_inv_j = bndiff_ij, for every row i: the "
              "other factor of the product.")),
          broadcast=dict(bnraw="dim 0")),
    _unit("bnvar", "bnvar = 1 / (n - 1) * bndiff2.sum(0, keepdim=True)", shape="(1, 64)",
          bnvar_inv=lambda v: -0.5 * (v.bnvar + 1e-5) ** -1.5 * v.dbnvar_inv,
          hints=dict(bnvar_inv=(
              "bnvar_inv = (bnvar + ε)^(−1/2) with ε = 10⁻⁵, and the power rule gives d/dx (x + ε)^(−1/2) = "
              "−½ (x + ε)^(−3/2). So ∂bnvar_inv_j/∂bnvar_j = −½ (bnvar_j + ε)^(−3/2): keep the ε inside."))),
    _unit("bndiff2", "bndiff2 = bndiff**2", tags=("bessel",), shape="(n, 64)", rule_kinds=dict(bnvar="sum"),
          bnvar=lambda v: torch.ones_like(v.bndiff2) / (v.n - 1) * v.dbnvar,
          hints=dict(bnvar=(
              "bnvar_j = (bndiff2_1j + … + bndiff2_nj)/(n−1), with n−1, not n (Bessel's correction). So "
              "∂bnvar_j/∂bndiff2_ij = 1/(n−1), for every row i."))),
    _unit("bndiff", "bndiff = hprebn - bnmeani", shape="(n, 64)",
          bnraw=lambda v: v.bnvar_inv * v.dbnraw,
          bndiff2=lambda v: 2 * v.bndiff * v.dbndiff2,
          hints=dict(
              bnraw=(
                  "bnraw_ij = bndiff_ij · bnvar_inv_j, so ∂bnraw_ij/∂bndiff_ij = bnvar_inv_j: the other factor, "
                  "one number per column."),
              bndiff2=(
                  "bndiff2_ij = bndiff_ij², and d/dx x² = 2x. So ∂bndiff2_ij/∂bndiff_ij = 2 bndiff_ij, entry by "
                  "entry."))),
    _unit("bnmeani", "bnmeani = 1 / n * hprebn.sum(0, keepdim=True)", shape="(1, 64)",
          bndiff=lambda v: -v.dbndiff.sum(0, keepdim=True),
          hints=dict(bndiff=(
              "bndiff_ij = hprebn_ij − bnmeani_j, so ∂bndiff_ij/∂bnmeani_j = −1, for every row i: the same "
              "bnmeani_j is subtracted in all n rows.")),
          broadcast=dict(bndiff="dim 0")),
    _unit("hprebn", "hprebn = embcat @ W1 + b1", shape="(n, 64)", rule_kinds=dict(bnmeani="sum"),
          bndiff=lambda v: v.dbndiff.clone(),
          bnmeani=lambda v: torch.ones_like(v.hprebn) / v.n * v.dbnmeani,
          hints=dict(
              bndiff=(
                  "bndiff_ij = hprebn_ij − bnmeani_j, so ∂bndiff_ij/∂hprebn_ij = 1 (along this line; the path "
                  "through the mean is the other line's business)."),
              bnmeani=(
                  "bnmeani_j = (hprebn_1j + … + hprebn_nj)/n, so ∂bnmeani_j/∂hprebn_ij = 1/n, for every row "
                  "i."))),
    _unit("embcat", "embcat = emb.view(emb.shape[0], -1)", shape="(n, 30)", rule_kinds=dict(hprebn="matmul"),
          hprebn=lambda v: v.dhprebn @ v.W1.T,
          hints=dict(hprebn=(
              "hprebn_ik = Σ_j embcat_ij W1_jk + b1_k, so ∂hprebn_ik/∂embcat_ij = W1_jk, for every column k: "
              "the same kind of line as logits from h."))),
    _unit("W1", "parameter", shape="(30, 64)", rule_kinds=dict(hprebn="matmul"),
          hprebn=lambda v: v.embcat.T @ v.dhprebn,
          hints=dict(hprebn=(
              "hprebn_ik = Σ_j embcat_ij W1_jk + b1_k, so ∂hprebn_ik/∂W1_jk = embcat_ij, for every row i: as for "
              "W2, one weight is used by all n examples."))),
    _unit("b1", "parameter", shape="(64,)",
          hprebn=lambda v: v.dhprebn.sum(0),
          hints=dict(hprebn=(
              "hprebn_ik = (embcat W1)_ik + b1_k, so ∂hprebn_ik/∂b1_k = 1, for every row i. Expect numbers very "
              "close to zero: batchnorm subtracts the column mean right afterwards, which cancels any constant "
              "added to a column, so b1 cannot change the loss. That is right, not a bug.")),
          broadcast=dict(hprebn="dim 0"),
          zero_because="batchnorm subtracts the column mean right after, which cancels any constant added to a "
                       "column"),
    _unit("emb", "emb = C[Xb]", shape="(n, 3, 10)", rule_kinds=dict(embcat="reshape"),
          embcat=lambda v: v.dembcat.view(v.emb.shape),
          hints=dict(embcat=(
              "Entry (i, 10k + m) of embcat is entry (i, k, m) of emb, for the k-th of the three context "
              "characters and the m-th of its 10 numbers. Each entry of embcat is one entry of emb, so its local "
              "derivative is 1 with respect to that entry and 0 with respect to all others."))),
    _unit("C", "parameter", shape="(27, 10)", tags=("lookup",), rule_kinds=dict(emb="lookup"),
          emb=lambda v: torch.zeros_like(v.C).index_add_(0, v.Xb.reshape(-1), v.demb.reshape(-1, v.C.shape[1])),
          hints=dict(emb=(
              "emb_ikm = C_cm where c = Xb_ik: a copy of row c of C. So ∂emb_ikm/∂C_cm = 1 at every position "
              "(i, k) where the character c appears in Xb, and 0 elsewhere: row c of C is copied once for each "
              "time c appears in the batch, and not at all if it never does."))),
)


def _batchnorm_backward(v) -> torch.Tensor:
    # dhprebn in one expression: the three paths through mean, variance and the direct one
    n = v.n
    return v.bngain * v.bnvar_inv / n * (
        n * v.dhpreact - v.dhpreact.sum(0) - n / (n - 1) * v.bnraw * (v.dhpreact * v.bnraw).sum(0))


EXERCISE_2 = _unit("logits", "logits = h @ W2 + b2", points=2, exercise=2, tags=("argmax",),
                   forbidden=("cross_entropy", "nll_loss"),  # F.softmax and F.log_softmax are forward functions
                   shape="(n, 27)", gives=("logits", "Yb", "n"),
                   loss=lambda v: (F.softmax(v.logits, 1) - _one_hot(v.Yb, v.logits)) / v.n,
                   overview=(
                       "Exercise 1 walked back from the loss to logits one line at a time, through a log, a "
                       "product, a power, a row sum, an exponential and a shift by the row maximum. Here those "
                       "lines are one function, the cross-entropy: per row, the softmax of the logits, minus the "
                       "log of the probability it gives the correct character, and then the mean over the n rows. "
                       "Rule: do not chain the lines again. Write one row's loss as a formula of that row's 27 "
                       "logits, differentiate it with respect to one logit, and simplify on paper before you write "
                       "code. The shift by the maximum drops out: it does not change the loss."),
                   hints=dict(loss=(
                       "For one row with logits l_1, …, l_27 and correct class y, the row's loss is "
                       "−log(e^(l_y) / Σ_k e^(l_k)), which is −l_y + log Σ_k e^(l_k): two pieces, each easy to "
                       "differentiate with respect to one logit l_j. The first, −l_y, holds a single logit. The "
                       "second, by the chain rule through the log (d/du log u = 1/u) and the exponential, has "
                       "derivative ∂/∂l_j log Σ_k e^(l_k) = e^(l_j) / Σ_k e^(l_k): entry j of the softmax of the "
                       "row's logits. A row's loss depends only on that row's logits, and the batch loss is the "
                       "mean of the n row losses. Differentiating the first piece and putting the pieces together "
                       "is your part.")))
EXERCISE_3 = _unit("hprebn", "hprebn = embcat @ W1 + b1",
                   points=2, exercise=3, tags=("bessel",), paths=("bnmeani", "bnvar"),
                   forbidden=("batch_norm", "BatchNorm1d", "layer_norm", "instance_norm"),
                   shape="(n, 64)", gives=("hprebn", "bnraw", "bnvar_inv", "bngain", "dhpreact", "n"),
                   hpreact=_batchnorm_backward,
                   overview=(
                       "Exercise 1 went back from hpreact to hprebn one line at a time. Here the batchnorm layer "
                       "is one function of hprebn, and it works on each of the 64 columns on its own: the columns "
                       "never mix. In a column, x_i is hprebn_i, the normalised x̂_i is bnraw_i, "
                       "1/√(σ² + ε) is bnvar_inv and γ is bngain. Rule (used along several paths): x_i reaches "
                       "the loss along more than one path, and the contributions of the paths add. The mean and "
                       "the variance are sums over the batch, so a path through them brings a sum over the batch "
                       "into the formula: a (1, 64) row with keepdim, or (64,) without; either one broadcasts down "
                       "the n rows. Derive on paper, then simplify before you write code."),
                   hints=dict(hpreact=(
                       "Treat hpreact = bngain · (hprebn − μ) / √(σ² + ε) + bnbias as one function of "
                       "hprebn, where μ is the mean of each column over the batch and σ² its variance "
                       "with 1/(n−1) (Bessel's correction). The columns are independent, so work on one "
                       "column: x_i = hprebn_i, x̂_i = bnraw_i = (x_i − μ)(σ² + ε)^(−1/2), and "
                       "∂L/∂x̂_i = bngain · dhpreact_i. Each x_i reaches the loss three ways; here is the "
                       "local derivative of each. Directly, with μ and σ² held fixed: ∂x̂_i/∂x_i = "
                       "(σ² + ε)^(−1/2). Through the mean: ∂μ/∂x_i = 1/n, and μ enters every x̂_j with "
                       "∂x̂_j/∂μ = −(σ² + ε)^(−1/2). Through the variance: ∂σ²/∂x_i = 2(x_i − μ)/(n−1) (its "
                       "part through μ is zero, as the text above the cell explains), and σ² enters every "
                       "x̂_j with ∂x̂_j/∂σ² = −½ (x_j − μ)(σ² + ε)^(−3/2), so collecting over j gives "
                       "∂L/∂σ² = −½ (σ² + ε)^(−3/2) Σ_j (∂L/∂x̂_j)(x_j − μ). Chain each way with what flows "
                       "into it, add the three, write (x_j − μ)(σ² + ε)^(−1/2) as x̂_j wherever it appears, "
                       "and take out the common factor.")))
EX4_HINT_KEY = ""  # the key of Exercise 4's one general hint: it has no single consumer
EXERCISE_4 = Unit("", 4, "the whole network, one training step", {}, points=2, hints={EX4_HINT_KEY: (
    "The plan, in order, all on this call's cache: dlogits from the logits and Yb, as in Exercise 2; from it the "
    "second layer's three gradients (of h, W2 and b2); through the tanh to dhpreact; the two batchnorm parameters, "
    "then dhprebn in one go, as in Exercise 3; the first layer's three gradients (of embcat, W1 and b1); the "
    "gradient of emb; and last the table C, whose repeated rows add up. Return the seven parameter gradients in the order of the "
    "notebook's parameters list: dC, dW1, db1, dW2, db2, dbngain, dbnbias.")},
    overview=(
        "Exercise 4 is the whole backward pass in one function: manual_backward gets the parameters and the cache "
        "of one forward pass, and returns the gradients of the parameters. Nothing new to derive. Rule: walk from "
        "the loss back to C as in Exercise 1, but take your one-expression answers for the two long stretches, "
        "Exercise 2 for dlogits and Exercise 3 for dhprebn; every other step is one of your Exercise 1 lines, "
        "written with the cache's tensors."))

UNITS: tuple[Unit, ...] = EXERCISE_1 + (EXERCISE_2, EXERCISE_3, EXERCISE_4)
BY_ID: dict[str, Unit] = {u.grade_id: u for u in UNITS}
TOTAL_POINTS = sum(u.points for u in UNITS)
# The shape of every variable of the forward pass, as the student sees it (n = batch size).
SHAPES: dict[str, str] = {**{u.var: u.shape for u in EXERCISE_1}, "loss": "()"}

# Exercise 4's function returns the gradients in this order (the notebook's `parameters` list).
EX4_RETURNS = ("dC", "dW1", "db1", "dW2", "db2", "dbngain", "dbnbias")

# Always forbidden in an answer cell: the ways to ask autograd instead of deriving by hand.
AUTOGRAD_ATTRIBUTES = ("grad", "backward", "retain_grad", "retain_grads", "requires_grad",
                       "requires_grad_", "grad_fn")
AUTOGRAD_MODULES = ("torch.autograd", "torch.func", "functorch")


# The names of the forward pass a cell could read: its data, every tensor it makes, and their gradients.
FORWARD_NAMES = ("Xb", "Yb", "loss", *(u.var for u in EXERCISE_1))


def one_go_rules() -> dict[str, dict]:
    """Per one-go exercise ("ex2", "ex3"): the names its cell may read (`gives`) and the forward-pass names and
    gradients it may not (`refused`), for grade/one_go.py, in the grader and (as a literal) in the notebook."""
    rules = {}
    for unit in (u for u in UNITS if u.gives):
        every = set(FORWARD_NAMES) | {"d" + name for name in FORWARD_NAMES}
        rules[f"ex{unit.exercise}"] = {"gives": list(unit.gives), "refused": sorted(every - set(unit.gives))}
    return rules


def diagnostic_table() -> dict[str, dict]:
    """Per variable, what the diagnosis of a wrong gradient uses (diagnose.py), the same for the grader and for the
    notebook's check (which gets it as a literal): the lines that use the variable, the paths of a one-go exercise,
    whether n-1 is Bessel's correction there, whether an argmax is on the way, whether its rows are looked up by
    index (Xb), and its shape. A variable graded twice (logits,
    hprebn) merges its rows."""
    table: dict[str, dict] = {}
    for unit in UNITS:
        if not unit.var:
            continue
        row = table.setdefault(unit.var, {"consumers": [], "paths": [], "bessel": False, "argmax": False,
                                          "lookup": False, "shape": unit.shape})
        if unit.exercise == 1:
            row["consumers"] = list(unit.consumers)
        row["paths"] += [p for p in unit.paths if p not in row["paths"]]
        row["bessel"] = row["bessel"] or "bessel" in unit.tags
        row["argmax"] = row["argmax"] or "argmax" in unit.tags
        row["lookup"] = row["lookup"] or "lookup" in unit.tags  # rows looked up by Xb: repeats accumulate
    return table
