"""The rule probe: does a right Exercise 1 answer follow its local rule, or is it right by luck?

A few wrong answers give the right numbers on every input, because a gradient they lean on is exactly 0
(units.Unit.zero_because): `dlogits = dnorm_logits.clone()` (the branch through logit_maxes left out),
dlogit_maxes with its sign flipped, zeros written for dlogit_maxes or db1. The replays cannot tell them from
right answers. The probe can: it runs the cell once more, on one replay, with the upstream gradients of the
unit's consumers replaced by random ones (every other injected gradient stays true), and compares the answer
with the sum of the table's shares on those random upstreams, as the local rule would give. Only the units where
a gradient is exactly 0 (the unit's own or a consumer's, can_be_lucky) get a probe: elsewhere no wrong
combination passes the replays.

- the answer follows the random upstreams: the rule is followed, fine;
- the answer is what it was with the true upstreams: the cell does not read them (Exercise 2's formula written in
  Exercise 1, say), which is a right answer too, except zeros written for a gradient that is 0;
- the answer is a wrong combination of the shares, each taken once, left out or with its sign flipped (all left out:
  zeros): right by luck, explained in one line from the table;
- anything else is inconclusive and nothing is said. A right answer can read true gradients the probe does not
  vary: a partial sum kept under a helper name by an earlier cell (`dlogits_1`), or an upstream recomputed inline
  from a gradient further back (`norm_logits.exp() * dcounts`). Only a combination of shares is evidence of a rule
  not followed.

Trusted side: the random upstreams and the expected answer are made here, in float64; the worker only runs the
cell and sends back numbers, which only this module judges. The probe can add a note to a right answer, never
points.
"""
from __future__ import annotations

import ast
import functools
import itertools
from dataclasses import dataclass

import numpy as np
import torch

from backprop_ninja import model, units
from backprop_ninja.grade import evidence, syntax
from backprop_ninja.grade.compare import ATOL

PROBE_SEED = 9003  # fixed: a unit's probe is the same in every grading, so a verdict can be reproduced
# Which of Exercise 1's replays the probe reuses: the notebook's own run, always first in the plan and free of the
# ties and extreme values that stress replays are built to have (a tie would make the argmax branch ambiguous).
PROBE_REPLAY = 0


def probed(unit: units.Unit) -> bool:
    """Exercise 1 units with a consumer whose gradient can be replaced, where a right answer can be right by luck
    (can_be_lucky). dlogprobs's only consumer is the loss, whose gradient is the number 1: there is no upstream to
    vary, so it has no probe."""
    return unit.exercise == 1 and "loss" not in unit.consumers and can_be_lucky(unit.var, unit.consumers)


@dataclass
class Probe:
    unit: units.Unit
    upstream: dict[str, torch.Tensor]  # "d<consumer>" -> the random float32 gradient sent to the worker
    shares: dict[str, np.ndarray]      # consumer -> its share of the gradient on the random upstreams (float64)
    expected: np.ndarray               # the sum of the shares: what the local rule gives
    scale: float                       # the tolerance's scale on the probe (as evidence.tolerance_scale)


def make_probe(unit: units.Unit, replay: model.Replay) -> Probe:
    """Random upstreams for `unit`'s consumers on `replay` (whose reference gradients must be filled).

    The probe's replay is the notebook's own (PROBE_REPLAY), the same in every grading, and the seed is fixed: so
    is the probe, which is made once per unit and kept (it is only read: the worker gets copies of its arrays)."""
    key = (unit.grade_id, replay.seed, replay.n, getattr(replay, "variant", ""))
    if key not in _MADE:
        _MADE[key] = _make_probe(unit, replay)
    return _MADE[key]


_MADE: dict[tuple, Probe] = {}


def _make_probe(unit: units.Unit, replay: model.Replay) -> Probe:
    generator = torch.Generator().manual_seed(PROBE_SEED + units.EXERCISE_1.index(unit))
    true = {c: replay.grads[c] for c in unit.consumers}
    # As large as the numbers the answer is normally made of, so rounding stays where the tolerance expects it;
    # never tied to the consumer's own size, which is ~0 for dlogit_maxes.
    size = evidence.tolerance_scale(replay.grads[unit.var], true)
    random = {c: (torch.randn(g.shape, generator=generator, dtype=torch.float64) * size).float()
              for c, g in true.items()}
    exact = {c: r.double() for c, r in random.items()}  # the float32 numbers the cell gets, in float64
    v = evidence.share_namespace(replay.values64, {**replay.grads, **exact}, replay.n)
    shares = {c: share(v).detach().double().numpy() for c, share in unit.shares.items()}
    expected = sum(shares.values())
    scale = evidence.tolerance_scale(torch.from_numpy(expected), exact)
    return Probe(unit, {"d" + c: r for c, r in random.items()}, shares, expected, scale)


def binds(source: str, name: str) -> bool:
    """Whether a cell assigns `name` (`name = ...`, `name += ...`): an earlier cell that does starts the gradient a
    later cell finishes, so the probe must replay it on the same random upstreams."""
    return name in _assigned_names(source)


@functools.lru_cache(maxsize=256)
def _assigned_names(source: str) -> frozenset[str]:
    """The names a cell assigns; parsed once per cell, since every later unit's probe asks about every earlier cell."""
    try:
        nodes = syntax.nodes(source)  # the grading's shared parse
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return frozenset()
    return frozenset(node.id for node in nodes if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store))


def luck(probe: Probe, on_probe: np.ndarray | None, on_true: np.ndarray, true_scale: float) -> str | None:
    """None if the answer follows its rule, never reads its upstream, or the probe is inconclusive; else why it is
    right by luck.

    on_probe: the answer with the random upstreams (None when the probe gave no answer: then there is no evidence
    and nothing is said); on_true: the answer on the same replay with the true upstreams; true_scale: that
    replay's tolerance scale for the unit."""
    return luck_of(probe.unit.var, probe.shares, on_probe, on_true, probe.scale, true_scale)


def wrong_combination(probe: Probe, answer: np.ndarray) -> dict[str, int] | None:
    """The signs (+1, 0 for left out, -1) that make `answer` a combination of the probe's shares other than their
    plain sum, or None."""
    return combination_of(probe.shares, answer, probe.scale)


def explain(probe: Probe, signs: dict[str, int], wrote_zeros: bool) -> str:
    """One line from the table: which rule is not followed, and why the value matched all the same."""
    return explain_luck(probe.unit.var, signs, wrote_zeros)


# The rule itself, on numpy arrays and the table's ZERO_BECAUSE alone: the notebook's check runs these very
# functions (notebook_diagnoses inlines them, NOTEBOOK_CODE) on shares from its own autograd, so both call the
# same answers lucky.
ZERO_BECAUSE = {u.var: u.zero_because for u in units.EXERCISE_1 if u.zero_because}
NOTEBOOK_CODE = ("can_be_lucky", "luck_of", "combination_of", "explain_luck", "_zero_because", "_only_because",
                 "_close")


def can_be_lucky(var: str, consumers) -> bool:
    """Whether a right answer for d<var> can be a wrong combination of its shares: only if d<var> or the gradient
    of one of its consumers is exactly 0 (ZERO_BECAUSE). A wrong combination (shares left out or with their signs
    flipped) differs from the sum of the shares by some of them, each once or twice; where no share is 0, that
    difference is not 0 on the replays, which fail such an answer, so the probe has nothing to add to a right one
    (tests/test_probe_subset.py checks every wrong combination on the table's shares)."""
    return any(_zero_because(v) for v in (var, *consumers))


def luck_of(var: str, shares: dict[str, np.ndarray], on_probe: np.ndarray | None, on_true: np.ndarray,
            scale: float, true_scale: float) -> str | None:
    """luck() for d<var>, given each consumer's share on the random upstreams and the tolerance scales of the probe
    (`scale`) and of the true run (`true_scale`)."""
    expected = sum(shares.values())
    if on_probe is None or on_probe.shape != expected.shape or not np.isfinite(on_probe).all():
        return None
    if _close(on_probe, expected, scale):
        return None
    wrote_zeros = not np.any(on_true)
    if _close(on_probe, on_true, true_scale) and not wrote_zeros:
        return None  # it does not read the upstream: a formula from further up (Exercise 2's, say) is right
    signs = combination_of(shares, on_probe, scale)
    if signs is None:
        return None  # not built from the shares alone: it reads something the probe did not vary
    return explain_luck(var, signs, wrote_zeros)


def combination_of(shares: dict[str, np.ndarray], answer: np.ndarray, scale: float) -> dict[str, int] | None:
    """The signs (+1, 0 for left out, -1) that make `answer` a combination of `shares` other than their plain sum,
    or None. A unit has one or two consumers: at most 9 combinations to try."""
    consumers = list(shares)
    zeros = np.zeros_like(sum(shares.values()))
    for signs in itertools.product((1, 0, -1), repeat=len(consumers)):
        if all(sign == 1 for sign in signs):
            continue  # the plain sum is the rule itself
        combination = sum((sign * shares[c] for c, sign in zip(consumers, signs) if sign), zeros)
        if _close(answer, combination, scale):
            return dict(zip(consumers, signs))
    return None


def explain_luck(var: str, signs: dict[str, int], wrote_zeros: bool) -> str:
    """One line from the table: which rule d<var> does not follow, and why the value matched all the same."""
    name = "d" + var
    if wrote_zeros:
        return f"{name} is written as zeros instead of following its rule; {_only_because(var)}"
    if _zero_because(var) and all(sign == -1 for sign in signs.values()):
        return f"the sign of {name} is flipped; {_only_because(var)}"
    for consumer, sign in signs.items():
        if sign == 1 or not _zero_because(consumer):
            continue
        if sign == 0:
            return f"the branch through {consumer} is missing; {_only_because(consumer)}"
        return f"the branch through {consumer} has its sign flipped; {_only_because(consumer)}"
    upstream = ", ".join("d" + c for c in signs)
    line = (f"{name} matches here, but it does not follow the local rule: with other values of {upstream} it "
            f"does not give the sum of its branches")
    zero = next((v for v in (var, *signs) if _zero_because(v)), None)
    return f"{line}; {_only_because(zero)}" if zero else line


def _zero_because(var: str) -> str:
    return ZERO_BECAUSE.get(var, "")


def _only_because(var: str) -> str:
    return f"it only works because d{var} is exactly 0 here: {_zero_because(var)}"


def _close(a: np.ndarray, b: np.ndarray, scale: float) -> bool:
    """Equal up to the grader's rounding tolerance (compare.ATOL of the scale), as a right answer is judged."""
    return a.shape == b.shape and bool(np.abs(a - b).max(initial=0.0) <= ATOL * scale)
