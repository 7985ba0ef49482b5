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


def _unit(var, forward, points=1, exercise=1, forbidden=(), tags=(), **shares) -> Unit:
    return Unit(var, exercise, forward, shares, points, tuple(forbidden), frozenset(tags))


# Exercise 1, in the order the student meets them: from the loss back to the embedding table.
EXERCISE_1 = (
    _unit("logprobs", "logprobs = probs.log()",
          loss=lambda v: -_one_hot(v.Yb, v.logprobs) / v.n),
    _unit("probs", "probs = counts * counts_sum_inv",
          logprobs=lambda v: v.dlogprobs / v.probs),
    _unit("counts_sum_inv", "counts_sum_inv = counts_sum**-1",
          probs=lambda v: (v.counts * v.dprobs).sum(1, keepdim=True)),
    _unit("counts_sum", "counts_sum = counts.sum(1, keepdim=True)",
          counts_sum_inv=lambda v: -v.counts_sum**-2 * v.dcounts_sum_inv),
    _unit("counts", "counts = norm_logits.exp()",
          probs=lambda v: v.counts_sum_inv * v.dprobs,
          counts_sum=lambda v: torch.ones_like(v.counts) * v.dcounts_sum),
    _unit("norm_logits", "norm_logits = logits - logit_maxes",
          counts=lambda v: v.counts * v.dcounts),
    _unit("logit_maxes", "logit_maxes = logits.max(1, keepdim=True).values",
          norm_logits=lambda v: -v.dnorm_logits.sum(1, keepdim=True)),
    _unit("logits", "logits = h @ W2 + b2", tags=("argmax",),
          norm_logits=lambda v: v.dnorm_logits.clone(),
          logit_maxes=lambda v: _one_hot(v.logits.argmax(1), v.logits) * v.dlogit_maxes),
    _unit("h", "h = torch.tanh(hpreact)",
          logits=lambda v: v.dlogits @ v.W2.T),
    _unit("W2", "parameter",
          logits=lambda v: v.h.T @ v.dlogits),
    _unit("b2", "parameter",
          logits=lambda v: v.dlogits.sum(0)),
    _unit("hpreact", "hpreact = bngain * bnraw + bnbias",
          h=lambda v: (1.0 - v.h**2) * v.dh),
    _unit("bngain", "parameter",
          hpreact=lambda v: (v.bnraw * v.dhpreact).sum(0, keepdim=True)),
    _unit("bnbias", "parameter",
          hpreact=lambda v: v.dhpreact.sum(0, keepdim=True)),
    _unit("bnraw", "bnraw = bndiff * bnvar_inv",
          hpreact=lambda v: v.bngain * v.dhpreact),
    _unit("bnvar_inv", "bnvar_inv = (bnvar + 1e-5)**-0.5",
          bnraw=lambda v: (v.bndiff * v.dbnraw).sum(0, keepdim=True)),
    _unit("bnvar", "bnvar = 1/(n-1)*(bndiff2).sum(0, keepdim=True)",
          bnvar_inv=lambda v: -0.5 * (v.bnvar + 1e-5) ** -1.5 * v.dbnvar_inv),
    _unit("bndiff2", "bndiff2 = bndiff**2", tags=("bessel",),
          bnvar=lambda v: torch.ones_like(v.bndiff2) / (v.n - 1) * v.dbnvar),
    _unit("bndiff", "bndiff = hprebn - bnmeani",
          bnraw=lambda v: v.bnvar_inv * v.dbnraw,
          bndiff2=lambda v: 2 * v.bndiff * v.dbndiff2),
    _unit("bnmeani", "bnmeani = 1/n*hprebn.sum(0, keepdim=True)",
          bndiff=lambda v: -v.dbndiff.sum(0, keepdim=True)),
    _unit("hprebn", "hprebn = embcat @ W1 + b1",
          bndiff=lambda v: v.dbndiff.clone(),
          bnmeani=lambda v: torch.ones_like(v.hprebn) / v.n * v.dbnmeani),
    _unit("embcat", "embcat = emb.view(emb.shape[0], -1)",
          hprebn=lambda v: v.dhprebn @ v.W1.T),
    _unit("W1", "parameter",
          hprebn=lambda v: v.embcat.T @ v.dhprebn),
    _unit("b1", "parameter",
          hprebn=lambda v: v.dhprebn.sum(0)),
    _unit("emb", "emb = C[Xb]",
          embcat=lambda v: v.dembcat.view(v.emb.shape)),
    _unit("C", "parameter",
          emb=lambda v: torch.zeros_like(v.C).index_add_(0, v.Xb.reshape(-1), v.demb.reshape(-1, v.C.shape[1]))),
)


def _batchnorm_backward(v) -> torch.Tensor:
    # dhprebn in one expression: the three paths through mean, variance and the direct one
    n = v.n
    return v.bngain * v.bnvar_inv / n * (
        n * v.dhpreact - v.dhpreact.sum(0) - n / (n - 1) * v.bnraw * (v.dhpreact * v.bnraw).sum(0))


EXERCISE_2 = _unit("logits", "logits = h @ W2 + b2", points=2, exercise=2, tags=("argmax",),
                   forbidden=("cross_entropy", "nll_loss", "log_softmax"),
                   loss=lambda v: (F.softmax(v.logits, 1) - _one_hot(v.Yb, v.logits)) / v.n)
EXERCISE_3 = _unit("hprebn", "hprebn = embcat @ W1 + b1",
                   points=2, exercise=3, tags=("bessel",),
                   forbidden=("batch_norm", "BatchNorm1d", "layer_norm", "instance_norm"),
                   hpreact=_batchnorm_backward)
EXERCISE_4 = Unit("", 4, "the whole network, one training step", {}, points=2)

UNITS: tuple[Unit, ...] = EXERCISE_1 + (EXERCISE_2, EXERCISE_3, EXERCISE_4)
BY_ID: dict[str, Unit] = {u.grade_id: u for u in UNITS}
TOTAL_POINTS = sum(u.points for u in UNITS)

# Exercise 4's function returns the gradients in this order (the notebook's `parameters` list).
EX4_RETURNS = ("dC", "dW1", "db1", "dW2", "db2", "dbngain", "dbnbias")

# Always forbidden in an answer cell: the ways to ask autograd instead of deriving by hand.
AUTOGRAD_ATTRIBUTES = ("grad", "backward", "retain_grad", "retain_grads", "requires_grad",
                       "requires_grad_", "grad_fn")
AUTOGRAD_MODULES = ("torch.autograd", "torch.func", "functorch")
