"""What the replays built to expose near-misses (engine.SPECIAL_REPLAYS) cost per grading, side by side.

Grades the shipped example notebooks warm, in one process and isolated, with the special replays off, with the
shipped one (the stress conditions in float64) and with two apart (a float32 stress replay and a plain float64 one),
the three settings alternating round by round so that the machine's load hits them alike. Prints the median time
per grading of each and its ratio to "off". Not a test: it only reports numbers (docs/benchmarks.md).

Run:  .venv/bin/python benchmarks/special_replays_cost.py [--rounds 25]
"""
from __future__ import annotations

import argparse
import statistics
import time

from backprop_ninja import model
from backprop_ninja.assign import REPO
from backprop_ninja.grade import engine, grade_notebook

SETTINGS = {
    "off": (),
    "one: stress in float64": ((404, 32, model.STRESS64),),
    "two: stress, float64": ((404, 32, model.STRESS), (505, 32, model.FLOAT64)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25, help="rounds of the three settings (default 25)")
    args = parser.parse_args()
    examples = sorted((REPO / "examples" / "submitted").glob("*/backprop_ninja/backprop_ninja.ipynb"))
    shipped = engine.SPECIAL_REPLAYS
    for path in examples:  # the canary, imports and caches, before anything is timed
        grade_notebook(path)
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    try:
        for _ in range(args.rounds):
            for name, special in SETTINGS.items():
                engine.SPECIAL_REPLAYS = special
                started = time.perf_counter()
                for path in examples:
                    grade_notebook(path)
                times[name].append((time.perf_counter() - started) / len(examples))
    finally:
        engine.SPECIAL_REPLAYS = shipped
    base = statistics.median(times["off"])
    print(f"warm grading of {len(examples)} examples, {args.rounds} rounds; shipped: {shipped}")
    for name, measured in times.items():
        median = statistics.median(measured)
        print(f"{name:24s} median {median * 1000:6.1f} ms per grading  x{median / base:.3f} of off")


if __name__ == "__main__":
    main()
