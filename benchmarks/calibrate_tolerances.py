"""Measure how far correct float32 answers land from autograd's float64 gradient, to set the grader's tolerance.

For every unit, on many replays (seeds x batch sizes), this computes correct answers the way a student's
float32 code would and reports the worst normalised error  max|answer - reference| / scale  (scale as in
backprop_ninja/grade/evidence.py). Correct answers measured:
  - Exercise 1: the unit's share formulas, on float32 values and float32 reference upstream gradients
    (what the grader injects);
  - Exercise 2: the share formula, and softmax written without subtracting the max;
  - Exercise 3: the one-expression formula, and the step-by-step chain of Exercise 1 from dhpreact;
  - Exercise 4: the whole chain from the loss in float32, step by step, and with the Exercise 2/3 shortcuts.
It also reports the smallest real mistake (a factor n/(n-1) on the whole gradient) on the same scale,
on the batch sizes the grader replays (17, 32, 50), to show the gap the tolerance sits in. Paste the output into docs/tolerances.md.

--variant stress or float64 measures the grader's special replays instead (model.stress_parameters, and the
float64 replay on which students' code runs in float64: there "float32" below reads "the replay's dtype").

Run:  .venv/bin/python benchmarks/calibrate_tolerances.py [--seeds 40] [--variant plain|stress|float64]
"""
from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F

from backprop_ninja import data, model, units
from backprop_ninja.grade import compare
from backprop_ninja.grade.evidence import build_evidence, share_namespace

BATCH_SIZES = (2, 3, 17, 32, 50, 200)
GRADER_BATCH_SIZES = (17, 32, 50)


def float32_chain(values32, grads32, n, first, shortcut=None):
    """Run the Exercise 1 shares in float32 from unit `first` on, feeding each unit its own results.

    `grads32` holds the gradients known before `first`; `shortcut` maps a variable to a function
    that computes its gradient in one go (the Exercise 2 and 3 formulas)."""
    grads = dict(grads32)
    start = [u.var for u in units.EXERCISE_1].index(first)
    for unit in units.EXERCISE_1[start:]:
        if shortcut and unit.var in shortcut:
            grads[unit.var] = shortcut[unit.var](share_namespace(values32, grads, n))
            continue
        v = share_namespace(values32, grads, n)
        grads[unit.var] = sum(share(v) for share in unit.shares.values())
    return grads


def correct_answers(replay):
    """grade_id (or ex4 name) -> list of (label, float32 answer) computed by correct float32 code."""
    values32, n = replay.values, replay.n
    dtype = values32["W1"].dtype  # float64 on the float64 replay: the grader injects references in that dtype
    injected = {k: g.to(dtype) for k, g in replay.grads.items()}
    answers = defaultdict(list)
    for unit in units.EXERCISE_1:
        v = share_namespace(values32, injected, n)
        answers[unit.grade_id].append(("shares", sum(s(v) for s in unit.shares.values())))
    v = share_namespace(values32, {}, n)
    answers["ex2_logits"].append(("softmax", units.EXERCISE_2.shares["loss"](v)))
    counts = values32["logits"].exp()
    no_max = (counts / counts.sum(1, keepdim=True) - F.one_hot(values32["Yb"], 27).to(dtype)) / n
    answers["ex2_logits"].append(("softmax without max", no_max))
    v = share_namespace(values32, injected, n)
    answers["ex3_hprebn"].append(("one expression", units.EXERCISE_3.shares["hpreact"](v)))
    chain = float32_chain(values32, {"hpreact": injected["hpreact"]}, n, "bnraw")
    answers["ex3_hprebn"].append(("chain", chain["hprebn"]))
    shortcuts = {
        "logits": lambda v: units.EXERCISE_2.shares["loss"](v),
        "hprebn": units._batchnorm_backward,
    }
    for label, shortcut in (("chain", None), ("ex2/ex3 shortcuts", shortcuts)):
        grads = float32_chain(values32, {}, n, "logprobs", shortcut)
        for name in units.EX4_RETURNS:
            answers[name].append((label, grads[name[1:]]))
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=40, help="replays per batch size (default 40)")
    parser.add_argument("--variant", choices=model.VARIANTS, default=model.PLAIN,
                        help="which replays: as drawn (default), the stress replay or the float64 replay")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES),
                        help=f"batch sizes (default {' '.join(map(str, BATCH_SIZES))})")
    args = parser.parse_args()
    batch_sizes = tuple(args.batch_sizes)
    torch.set_num_threads(1)
    Xtr, Ytr = model.build_dataset(model.split_words(data.load_words())[0])

    worst = defaultdict(lambda: (0.0, None))        # key -> (normalised error, (seed, n, label)), n >= 17
    worst_tiny = defaultdict(lambda: (0.0, None))   # the same for n = 2 and 3
    smallest_mistake = defaultdict(lambda: np.inf)  # key -> normalised size of a factor n/(n-1), n <= 50
    eps32 = np.finfo(np.float64 if args.variant in model.IN_FLOAT64 else np.float32).eps  # of the replay's dtype
    for n in batch_sizes:
        for seed in range(1000, 1000 + args.seeds):
            replay = model.make_replay(Xtr, Ytr, seed, n, variant=args.variant)
            evidence = build_evidence(replay)
            for key, candidates in correct_answers(replay).items():
                ev = evidence[key] if key in evidence else evidence["ex4_backward"][key]
                for label, answer in candidates:
                    error = np.abs(answer.double().numpy() - ev.reference).max() / ev.scale
                    bucket = worst_tiny if n < 17 else worst
                    if error > bucket[key][0]:
                        bucket[key] = (error, (seed, n, label))
                if n in GRADER_BATCH_SIZES:  # a mistake must stand out on the replays the grader runs
                    mistake = np.abs(ev.reference).max() / (n - 1) / ev.scale
                    smallest_mistake[key] = min(smallest_mistake[key], mistake)

    print(f"{len(batch_sizes) * args.seeds} {args.variant} replays: n in {batch_sizes}, {args.seeds} seeds each")
    print(f"normalised error = max|answer - reference| / scale;  eps32 = {eps32:.3g}")
    print(f"{'unit':18} {'n>=17':>10} {'(eps32)':>8} {'n in 2,3':>10}  {'n/(n-1) slip':>12}  worst n>=17 at (seed, n, answer)")
    for key in sorted(worst, key=lambda k: -worst[k][0]):
        error, where = worst[key]
        print(f"{key:18} {error:10.2e} {error / eps32:8.0f} {worst_tiny[key][0]:10.2e}  "
              f"{smallest_mistake[key]:12.2e}  {where}")
    overall = max((e for e, _ in worst.values()), default=0.0)
    overall_tiny = max((e for e, _ in worst_tiny.values()), default=0.0)
    atol = compare.ATOL_FLOAT64 if args.variant in model.IN_FLOAT64 else compare.ATOL
    print(f"worst for n >= 17: {overall:.2e} = {overall / eps32:.0f} eps32; grader's ATOL for these replays = "
          f"{atol:.0e}, margin x{atol / max(overall, np.finfo(np.float64).tiny):.0f};  RTOL = {compare.RTOL:.0e}")
    if worst_tiny:
        print(f"worst for n in (2, 3): {overall_tiny:.2e} (batchnorm over 2-3 rows is ill-conditioned; "
              f"the grader never replays such batches)")

if __name__ == "__main__":
    main()
