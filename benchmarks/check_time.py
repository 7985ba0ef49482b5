"""How long the notebook's check() takes, per gradient, in an IPython shell as Jupyter runs it.

Runs the release's set-up cells once in one InteractiveShell (the same engine a Jupyter kernel runs cells with),
then, for every unit of Exercise 1 and for Exercises 2 and 3, the solution's answer cell followed by its check,
timing the check alone. The first check of a forward pass also draws the fresh batches and the stress replay
(cached afterwards), so it is reported on its own. Goal (issue 14): every check under 0.5 s on the 2-core machine.

Run: .venv/bin/python benchmarks/check_time.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import time

import nbformat

from backprop_ninja import data, units
from backprop_ninja.assign import REPO, notebook_path, solution_cells

SETUP = ("imports", "data", "vocab", "helpers", "diagnoses", "tutor", "model", "forward")


def timed_checks(shell, solutions: dict[str, str]) -> dict[str, float]:
    seconds = {}
    for unit in units.UNITS[:-1]:  # Exercise 4's check trains nothing but builds another network: not a check()
        name = unit.var if unit.exercise == 1 else f"ex{unit.exercise}"
        assert shell.run_cell(solutions[unit.grade_id], cell_id=unit.grade_id).success, unit.grade_id
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            result = shell.run_cell(f'check("{name}")')
        seconds[unit.grade_id] = time.perf_counter() - start
        assert result.success, (unit.grade_id, result.error_in_exec)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from IPython.core.interactiveshell import InteractiveShell

    os.environ["BACKPROP_NINJA_NAMES"] = str(data.names_path())
    os.environ.pop("NBGRADER_EXECUTION", None)
    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source
             for c in nbformat.read(notebook_path(REPO, "release"), as_version=4).cells}
    shell = InteractiveShell.instance()
    with contextlib.redirect_stdout(io.StringIO()):
        for grade_id in SETUP:
            assert shell.run_cell(cells[grade_id]).success, grade_id
    solutions = solution_cells()
    rounds = [timed_checks(shell, solutions) for _ in range(args.rounds)]
    first = rounds[0][units.UNITS[0].grade_id]
    later = [r[g] for r in rounds for g in r][1:]
    worst_id = max(rounds[-1], key=rounds[-1].get)
    print(f"first check after the forward pass (draws and caches the replays): {first:.3f} s")
    print(f"every other check ({len(later)}): median {statistics.median(later):.3f} s, max {max(later):.3f} s")
    print(f"slowest unit in the last round: {worst_id} {rounds[-1][worst_id]:.3f} s")
    over = sorted({g for r in rounds for g, s in r.items() if s > 0.5})
    print("goal, every check under 0.5 s:", "met" if not over and first <= 0.5 else f"NOT met ({', '.join(over)})")


if __name__ == "__main__":
    main()
