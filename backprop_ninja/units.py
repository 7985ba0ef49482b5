"""The table of graded units: one row per gradient the student writes.

Like micrograd, each row puts a forward line next to its backward: for every consumer of the
variable (the later line that reads it) a local backward that turns the consumer's gradient into
this variable's share. The full gradient is the sum of those shares. Autograd stays the reference;
the kit's tests check that the shares add up to it, and the diagnostics use single shares to
recognise a missing branch ("a variable used twice accumulates").

Everything else reads this table: the grader, the hidden tests, the notebook's summary, the docs.
"""
from __future__ import annotations

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

    @property
    def grade_id(self) -> str:
        return f"ex{self.exercise}_{self.var or 'backward'}"

    @property
    def test_id(self) -> str:
        return f"test_{self.grade_id}"

    @property
    def answer(self) -> str:
        """The name the student's cell must define."""
        return f"d{self.var}" if self.var else "manual_backward"

    @property
    def consumers(self) -> tuple[str, ...]:
        return tuple(self.shares)


def _one_hot(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.one_hot(index, num_classes=like.shape[1]).to(like.dtype)


def _unit(var, forward, points=1, exercise=1, forbidden=(), tags=(), *, shape, hints, broadcast=None, paths=(),
          zero_because="", **shares) -> Unit:
    broadcast = dict(broadcast or {})
    if set(hints) != set(shares) or not set(broadcast) <= set(shares):
        raise ValueError(f"{var}: hints must name exactly the consumers {sorted(shares)}, broadcast a subset")
    return Unit(var, exercise, forward, shares, points, tuple(forbidden), frozenset(tags),
                dict(hints), broadcast, shape, tuple(paths), zero_because)


# Exercise 1, in the order the student meets them: from the loss back to the embedding table.
# Each row: the variable, its forward line, its shape, then one share per consumer, with beside it
# the hint for that consumer (its local derivative, in words and in math) and, where the consumer
# stretched the variable along some dimensions, which ones (the share sums over them).
EXERCISE_1 = (
    _unit("logprobs", "logprobs = probs.log()", shape="(n, 27)",
          loss=lambda v: -_one_hot(v.Yb, v.logprobs) / v.n,
          hints=dict(loss=(
              "The loss is minus the mean, over the n rows, of one entry per row: the entry of logprobs "
              "in row i at the column of the correct next character Yb_i. So ∂loss/∂logprobs is −1/n at "
              "those n positions and 0 at every other position, because the other entries never reach "
              "the loss."))),
    _unit("probs", "probs = counts * counts_sum_inv", shape="(n, 27)",
          logprobs=lambda v: v.dlogprobs / v.probs,
          hints=dict(logprobs=(
              "logprobs is the natural log of probs, entry by entry, and d/dx log x = 1/x. So "
              "∂logprobs/∂probs = 1/probs, entry by entry; by the chain rule, scale the incoming "
              "gradient dlogprobs by it, element by element."))),
    _unit("counts_sum_inv", "counts_sum_inv = counts_sum**-1", shape="(n, 1)",
          probs=lambda v: (v.counts * v.dprobs).sum(1, keepdim=True),
          hints=dict(probs=(
              "probs = counts · counts_sum_inv is a product, so ∂probs/∂counts_sum_inv = counts, entry "
              "by entry. But counts_sum_inv holds one number per row, shape (n, 1), and was stretched "
              "across all 27 columns of its row: it was used 27 times, so add up what comes back from "
              "all of them. That is counts times dprobs, entry by entry, summed over dim 1 (the columns), "
              "keeping the shape (n, 1).")),
          broadcast=dict(probs="dim 1")),
    _unit("counts_sum", "counts_sum = counts.sum(1, keepdim=True)", shape="(n, 1)",
          counts_sum_inv=lambda v: -v.counts_sum**-2 * v.dcounts_sum_inv,
          hints=dict(counts_sum_inv=(
              "counts_sum_inv = counts_sum^(−1), and by the power rule d/dx x^(−1) = −x^(−2). So "
              "∂counts_sum_inv/∂counts_sum = −1/counts_sum², entry by entry. Both have shape (n, 1), so "
              "there is nothing to sum: multiply by dcounts_sum_inv and you are done."))),
    _unit("counts", "counts = norm_logits.exp()", shape="(n, 27)",
          probs=lambda v: v.counts_sum_inv * v.dprobs,
          counts_sum=lambda v: torch.ones_like(v.counts) * v.dcounts_sum,
          hints=dict(
              probs=(
                  "In probs = counts · counts_sum_inv, ∂probs/∂counts = counts_sum_inv. Every entry of "
                  "row i was multiplied by the same number, counts_sum_inv of row i, so multiply dprobs "
                  "by that row's number: the (n, 1) column stretches across the 27 columns, and the "
                  "result already has the shape of counts, (n, 27)."),
              counts_sum=(
                  "counts_sum adds up the 27 entries of each row, so ∂counts_sum_i/∂counts_ij = 1 for "
                  "every column j. A sum hands its gradient unchanged to each of the things it added: "
                  "every entry of row i receives dcounts_sum_i, copied out across the 27 columns into "
                  "shape (n, 27)."))),
    _unit("norm_logits", "norm_logits = logits - logit_maxes", shape="(n, 27)",
          counts=lambda v: v.counts * v.dcounts,
          hints=dict(counts=(
              "counts = e^norm_logits, entry by entry, and the exponential is its own derivative: "
              "∂counts/∂norm_logits = e^norm_logits, which is counts itself. You already have counts "
              "from the forward pass, so reuse it and multiply by dcounts, entry by entry."))),
    _unit("logit_maxes", "logit_maxes = logits.max(1, keepdim=True).values", shape="(n, 1)",
          norm_logits=lambda v: -v.dnorm_logits.sum(1, keepdim=True),
          hints=dict(norm_logits=(
              "norm_logits = logits − logit_maxes, so ∂norm_logits/∂logit_maxes = −1. logit_maxes holds "
              "one number per row, shape (n, 1), subtracted from all 27 entries of its row, so it was "
              "used 27 times: its gradient is minus the sum of dnorm_logits over dim 1, keeping (n, 1). "
              "Expect values very close to zero: shifting a row of logits by a constant does not change "
              "the probabilities, so it cannot change the loss.")),
          broadcast=dict(norm_logits="dim 1"),
          zero_because="softmax ignores a shift of a row, so the row's maximum cannot change the loss"),
    _unit("logits", "logits = h @ W2 + b2", tags=("argmax",), shape="(n, 27)",
          norm_logits=lambda v: v.dnorm_logits.clone(),
          logit_maxes=lambda v: _one_hot(v.logits.argmax(1), v.logits) * v.dlogit_maxes,
          hints=dict(
              norm_logits=(
                  "norm_logits = logits − logit_maxes, so ∂norm_logits/∂logits = 1: along this branch "
                  "the gradient dnorm_logits flows through unchanged, same shape (n, 27)."),
              logit_maxes=(
                  "logit_maxes_i is the largest of the 27 logits in row i. A maximum depends only on the "
                  "entry that won: ∂logit_maxes_i/∂logits_ij = 1 if column j holds the maximum of row i, "
                  "and 0 for every other column. So this branch is zero everywhere except at one "
                  "position per row, the position of the maximum, which receives dlogit_maxes_i."))),
    _unit("h", "h = torch.tanh(hpreact)", shape="(n, 64)",
          logits=lambda v: v.dlogits @ v.W2.T,
          hints=dict(logits=(
              "logits = h W2 + b2 is a matrix product. For Y = X W, the gradient with respect to X is "
              "(∂L/∂Y) times Wᵀ. Here that is dlogits, (n, 27), times the transpose of W2, (27, 64), "
              "giving (n, 64), the shape of h. If the order is unclear, line up the shapes: only one "
              "arrangement fits."))),
    _unit("W2", "parameter", shape="(64, 27)",
          logits=lambda v: v.h.T @ v.dlogits,
          hints=dict(logits=(
              "For Y = X W, the gradient with respect to W is Xᵀ times (∂L/∂Y). Here that is the "
              "transpose of h, (64, n), times dlogits, (n, 27), giving (64, 27), the shape of W2. The "
              "product adds up the contributions of all n examples, which is right: every example used "
              "the same W2."))),
    _unit("b2", "parameter", shape="(27,)",
          logits=lambda v: v.dlogits.sum(0),
          hints=dict(logits=(
              "In logits = h W2 + b2, ∂logits/∂b2 = 1: an added bias passes the gradient through. But "
              "b2 is a single row of 27 numbers added to each of the n rows, so every row sends "
              "gradient back to it: sum dlogits over dim 0 (the batch) to get shape (27,).")),
          broadcast=dict(logits="dim 0")),
    _unit("hpreact", "hpreact = bngain * bnraw + bnbias", shape="(n, 64)",
          h=lambda v: (1.0 - v.h**2) * v.dh,
          hints=dict(h=(
              "h = tanh(hpreact), and d/dx tanh x = 1 − tanh² x. Since tanh(hpreact) is exactly h, "
              "∂h/∂hpreact = 1 − h², entry by entry; multiply it by dh, entry by entry. Using h avoids "
              "computing the tanh again."))),
    _unit("bngain", "parameter", shape="(1, 64)",
          hpreact=lambda v: (v.bnraw * v.dhpreact).sum(0, keepdim=True),
          hints=dict(hpreact=(
              "hpreact = bngain · bnraw + bnbias, so ∂hpreact/∂bngain = bnraw. bngain has one number per "
              "hidden unit, shape (1, 64), shared by all n rows: multiply bnraw by dhpreact entry by "
              "entry, then sum over dim 0 (the batch), keeping the shape (1, 64).")),
          broadcast=dict(hpreact="dim 0")),
    _unit("bnbias", "parameter", shape="(1, 64)",
          hpreact=lambda v: v.dhpreact.sum(0, keepdim=True),
          hints=dict(hpreact=(
              "∂hpreact/∂bnbias = 1: an added bias passes the gradient through. bnbias, shape (1, 64), "
              "was added to each of the n rows, so sum dhpreact over dim 0 and keep the shape (1, 64).")),
          broadcast=dict(hpreact="dim 0")),
    _unit("bnraw", "bnraw = bndiff * bnvar_inv", shape="(n, 64)",
          hpreact=lambda v: v.bngain * v.dhpreact,
          hints=dict(hpreact=(
              "In hpreact = bngain · bnraw + bnbias, ∂hpreact/∂bnraw = bngain. bngain is a (1, 64) row; "
              "multiplied entry by entry with dhpreact it stretches down the n rows, and the result "
              "already has the shape of bnraw, (n, 64): nothing to sum."))),
    _unit("bnvar_inv", "bnvar_inv = (bnvar + 1e-5)**-0.5", shape="(1, 64)",
          bnraw=lambda v: (v.bndiff * v.dbnraw).sum(0, keepdim=True),
          hints=dict(bnraw=(
              "bnraw = bndiff · bnvar_inv, so ∂bnraw/∂bnvar_inv = bndiff. bnvar_inv holds one number per "
              "hidden unit, shape (1, 64), used in every one of the n rows: multiply bndiff by dbnraw "
              "entry by entry, then sum over dim 0, keeping the shape (1, 64).")),
          broadcast=dict(bnraw="dim 0")),
    _unit("bnvar", "bnvar = 1/(n-1)*(bndiff2).sum(0, keepdim=True)", shape="(1, 64)",
          bnvar_inv=lambda v: -0.5 * (v.bnvar + 1e-5) ** -1.5 * v.dbnvar_inv,
          hints=dict(bnvar_inv=(
              "bnvar_inv = (bnvar + ε)^(−1/2) with ε = 10⁻⁵. The power rule gives "
              "∂bnvar_inv/∂bnvar = −½ · (bnvar + ε)^(−3/2), entry by entry; keep the ε inside. Both "
              "have shape (1, 64), so just multiply by dbnvar_inv."))),
    _unit("bndiff2", "bndiff2 = bndiff**2", tags=("bessel",), shape="(n, 64)",
          bnvar=lambda v: torch.ones_like(v.bndiff2) / (v.n - 1) * v.dbnvar,
          hints=dict(bnvar=(
              "bnvar is 1/(n−1) times the sum of bndiff2 down each column (note n−1, not n: Bessel's "
              "correction). Every entry of column j enters that sum once, with weight 1/(n−1), so "
              "∂bnvar_j/∂bndiff2_ij = 1/(n−1) for every row i. The (1, 64) gradient dbnvar is copied "
              "down to all n rows, each copy scaled by 1/(n−1), giving (n, 64)."))),
    _unit("bndiff", "bndiff = hprebn - bnmeani", shape="(n, 64)",
          bnraw=lambda v: v.bnvar_inv * v.dbnraw,
          bndiff2=lambda v: 2 * v.bndiff * v.dbndiff2,
          hints=dict(
              bnraw=(
                  "In bnraw = bndiff · bnvar_inv, ∂bnraw/∂bndiff = bnvar_inv. The (1, 64) row bnvar_inv "
                  "stretches down the n rows when multiplied entry by entry with dbnraw, giving (n, 64)."),
              bndiff2=(
                  "bndiff2 = bndiff², and d/dx x² = 2x. So ∂bndiff2/∂bndiff = 2 · bndiff, entry by "
                  "entry; multiply it by dbndiff2, entry by entry."))),
    _unit("bnmeani", "bnmeani = 1/n*hprebn.sum(0, keepdim=True)", shape="(1, 64)",
          bndiff=lambda v: -v.dbndiff.sum(0, keepdim=True),
          hints=dict(bndiff=(
              "bndiff = hprebn − bnmeani, so ∂bndiff/∂bnmeani = −1. bnmeani is one row, (1, 64), "
              "subtracted from each of the n rows of hprebn: its gradient is minus the sum of dbndiff "
              "over dim 0, keeping the shape (1, 64).")),
          broadcast=dict(bndiff="dim 0")),
    _unit("hprebn", "hprebn = embcat @ W1 + b1", shape="(n, 64)",
          bndiff=lambda v: v.dbndiff.clone(),
          bnmeani=lambda v: torch.ones_like(v.hprebn) / v.n * v.dbnmeani,
          hints=dict(
              bndiff=(
                  "bndiff = hprebn − bnmeani, so ∂bndiff/∂hprebn = 1: along this branch dbndiff flows "
                  "through unchanged, shape (n, 64)."),
              bnmeani=(
                  "bnmeani is 1/n times the sum of hprebn down each column, so ∂bnmeani_j/∂hprebn_ij = "
                  "1/n for every row i. The (1, 64) gradient dbnmeani is copied down to all n rows, each "
                  "copy scaled by 1/n, giving (n, 64)."))),
    _unit("embcat", "embcat = emb.view(emb.shape[0], -1)", shape="(n, 30)",
          hprebn=lambda v: v.dhprebn @ v.W1.T,
          hints=dict(hprebn=(
              "hprebn = embcat W1 + b1 is the same kind of matrix product as for h: the gradient with "
              "respect to the left factor is dhprebn times the transpose of W1, (n, 64) times (64, 30), "
              "giving (n, 30), the shape of embcat."))),
    _unit("W1", "parameter", shape="(30, 64)",
          hprebn=lambda v: v.embcat.T @ v.dhprebn,
          hints=dict(hprebn=(
              "As for W2: the gradient with respect to the right factor is the transpose of embcat, "
              "(30, n), times dhprebn, (n, 64), giving (30, 64), the shape of W1. The product adds up "
              "all n examples."))),
    _unit("b1", "parameter", shape="(64,)",
          hprebn=lambda v: v.dhprebn.sum(0),
          hints=dict(hprebn=(
              "∂hprebn/∂b1 = 1, and b1, one row of 64 numbers, was added to each of the n rows: sum "
              "dhprebn over dim 0 to get shape (64,). Expect numbers very close to zero: batchnorm "
              "subtracts the batch mean right afterwards, which cancels any constant added to a "
              "column, so b1 cannot change the loss. That is correct, not a bug.")),
          broadcast=dict(hprebn="dim 0"),
          zero_because="batchnorm subtracts the column mean right after, which cancels any constant added to a "
                       "column"),
    _unit("emb", "emb = C[Xb]", shape="(n, 3, 10)",
          embcat=lambda v: v.dembcat.view(v.emb.shape),
          hints=dict(embcat=(
              "embcat only rearranges emb: the three 10-number embeddings of each example are laid side "
              "by side as 30 numbers. No arithmetic happens, every entry is copied once, so the local "
              "derivative is 1: give dembcat, shape (n, 30), back the shape of emb, (n, 3, 10)."))),
    _unit("C", "parameter", shape="(27, 10)", tags=("lookup",),
          emb=lambda v: torch.zeros_like(v.C).index_add_(0, v.Xb.reshape(-1), v.demb.reshape(-1, v.C.shape[1])),
          hints=dict(emb=(
              "emb looks rows up in C: position (i, k) of emb is a copy of the row of C for character "
              "Xb_ik. A copy has derivative 1, so each of the n·3 ten-number rows of demb goes back to "
              "the row of C it was copied from. A character used several times in the batch collects "
              "the sum of all its gradients (used twice, add the branches); a character never used gets "
              "zeros. Start from zeros of shape (27, 10) and add each row of demb into its place."))),
)


def _batchnorm_backward(v) -> torch.Tensor:
    # dhprebn in one expression: the three paths through mean, variance and the direct one
    n = v.n
    return v.bngain * v.bnvar_inv / n * (
        n * v.dhpreact - v.dhpreact.sum(0) - n / (n - 1) * v.bnraw * (v.dhpreact * v.bnraw).sum(0))


EXERCISE_2 = _unit("logits", "logits = h @ W2 + b2", points=2, exercise=2, tags=("argmax",),
                   forbidden=("cross_entropy", "nll_loss", "log_softmax"),
                   shape="(n, 27)",
                   loss=lambda v: (F.softmax(v.logits, 1) - _one_hot(v.Yb, v.logits)) / v.n,
                   hints=dict(loss=(
                       "Treat everything from logits to the loss as one function. For one row with logits "
                       "l_1, …, l_27 and correct class y, the row's loss is −log(e^(l_y) / Σ_k e^(l_k)), which "
                       "is −l_y + log Σ_k e^(l_k): two pieces, each easy to differentiate with respect to one "
                       "logit l_j. The first, −l_y, holds only the logit of the correct class: its derivative "
                       "is −1 when j is y and 0 for every other j. The second, by the chain rule through the "
                       "log, has derivative e^(l_j) / Σ_k e^(l_k): entry j of the softmax of the row's logits. "
                       "A row's loss depends only on that row's logits, and the batch "
                       "loss is the mean of the n row losses, so each row's derivative is also scaled by 1/n. "
                       "Combining the pieces is your part.")))
EXERCISE_3 = _unit("hprebn", "hprebn = embcat @ W1 + b1",
                   points=2, exercise=3, tags=("bessel",), paths=("bnmeani", "bnvar"),
                   forbidden=("batch_norm", "BatchNorm1d", "layer_norm", "instance_norm"),
                   shape="(n, 64)",
                   hpreact=_batchnorm_backward,
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
    "Nothing new to derive: run the backward steps you already wrote, in order from the loss back to "
    "C, on the values of this step's forward pass. Use your Exercise 2 result for dlogits and your "
    "Exercise 3 result for dhprebn, so the path is short. Return the seven parameter gradients in the "
    "order of the notebook's parameters list: dC, dW1, db1, dW2, db2, dbngain, dbnbias.")})

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
