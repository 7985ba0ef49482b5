"""Cold wall time of grading one submission: a fresh `backprop-ninja grade` process, torch import included.

Side by side in one run, alternating, so the machine's load hits all alike: the whole grading command with
isolation (the default: a bwrap sandbox that imports torch in parallel with the grader), the same with
--no-isolation, a bare `python -c "import torch"`, and the same ending in os._exit (the floor no torch-based grader
can go under: the grading command skips the interpreter's teardown too). Prints the medians and the ratios.
Goals: the whole isolated command within 1.1x of the bare import (issue 13), and <= 1.5 s.

Run: .venv/bin/python benchmarks/grade_cold.py [--runs 5] [--baseline DIR] [NOTEBOOK]
--baseline DIR also times the isolated command of another checkout (e.g. `git worktree add /tmp/before COMMIT`),
in the same rounds, with PYTHONPATH=DIR: a change measured side by side with the code before it.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backprop_ninja.assign import REPO
from backprop_ninja.data import names_path

DEFAULT = REPO / "examples" / "submitted" / "ada" / "backprop_ninja" / "backprop_ninja.ipynb"


def wall(cmd: list[str] | tuple[list[str], str]) -> float:
    """Wall time of a command; a (command, DIR) pair runs with PYTHONPATH=DIR, from DIR."""
    cmd, tree = cmd if isinstance(cmd, tuple) else (cmd, None)
    env = dict(os.environ, PYTHONPATH=tree, BACKPROP_NINJA_NAMES=str(names_path())) if tree else None
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env, cwd=tree)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", nargs="?", default=str(DEFAULT))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", metavar="DIR", help="a checkout to time side by side (PYTHONPATH=DIR)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        grade = [sys.executable, "-m", "backprop_ninja", "grade", args.notebook, "--out", out]
        commands = {"grade, isolated (default)": grade, "grade --no-isolation": grade + ["--no-isolation"],
                    "python -c 'import torch'": [sys.executable, "-c", "import torch"],
                    "the same, ending in os._exit": [sys.executable, "-c", "import os, torch; os._exit(0)"]}
        if args.baseline:
            commands["baseline, isolated"] = ([sys.executable, "-m", "backprop_ninja", "grade",
                                               str(Path(args.notebook).resolve()), "--out", out], args.baseline)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for command in commands.values():
            wall(command)  # warm the file cache once; every timed run below is still a fresh process
        for _ in range(args.runs):
            for name, command in commands.items():
                times[name].append(wall(command))
    medians = {name: statistics.median(runs) for name, runs in times.items()}
    for name, runs in times.items():
        print(f"{name:28s} median {medians[name]:.2f} s  runs {', '.join(f'{t:.2f}' for t in runs)}")
    isolated, unisolated, floor, floor_no_teardown = list(medians.values())[:4]
    print(f"isolated / unisolated: {isolated / unisolated:.2f}x; isolated / bare torch import: {isolated / floor:.2f}x; "
          f"isolated / bare import without teardown (the grader skips it too): {isolated / floor_no_teardown:.2f}x")
    if args.baseline:
        baseline = medians["baseline, isolated"]
        print(f"baseline ({args.baseline}) / bare torch import: {baseline / floor:.2f}x; "
              f"this checkout / baseline: {isolated / baseline:.2f}x")
    print(f"goal, the isolated command within 1.1x of the bare import: {'met' if isolated <= 1.1 * floor else 'NOT met'}")
    print(f"goal, the whole isolated command <= 1.5 s: {'met' if isolated <= 1.5 else 'NOT met'} ({isolated:.2f} s)")


if __name__ == "__main__":
    main()
