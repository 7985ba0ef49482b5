"""How long a correct, filled release notebook takes to run top to bottom on the short training schedule.

Runs examples/submitted/ada (the release with every answer filled in) with nbclient, as Jupyter would, with
BACKPROP_NINJA_STEPS=1000 (the schedule nbgrader uses while grading), a few times, and prints each wall time
(kernel start included) and whether any cell raised. Goal: under 60 s on the 2-core reference machine.

Run: .venv/bin/python benchmarks/notebook_runtime.py [--runs 3] [--steps 1000]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import nbformat
from nbclient import NotebookClient

from backprop_ninja import data
from backprop_ninja.assign import REPO

NOTEBOOK = REPO / "examples" / "submitted" / "ada" / "backprop_ninja" / "backprop_ninja.ipynb"


def run_once(steps: int) -> tuple[float, list[str]]:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    os.environ.update(BACKPROP_NINJA_STEPS=str(steps), BACKPROP_NINJA_NAMES=str(data.names_path()))
    start = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    elapsed = time.perf_counter() - start
    errors = [f"{c.get('id')}: {o.ename}" for c in nb.cells if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    return elapsed, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    args = parser.parse_args()
    times = []
    for i in range(args.runs):
        elapsed, errors = run_once(args.steps)
        times.append(elapsed)
        print(f"run {i + 1}: {elapsed:.1f} s, cells that raised: {errors or 'none'}")
    print(f"median {statistics.median(times):.1f} s over {args.runs} runs (goal: < 60 s)")


if __name__ == "__main__":
    main()
