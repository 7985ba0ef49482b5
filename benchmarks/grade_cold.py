"""Cold wall time of grading one submission: a fresh `backprop-ninja grade` process, torch import included.

Side by side in one run, alternating, so the machine's load hits both alike: the whole grading command, and a bare
`python -c "import torch"` (the floor no torch-based grader can go under). Prints the medians and their difference,
which is what the grader itself costs. Goal: <= 1.5 s for the whole command.

Run: .venv/bin/python benchmarks/grade_cold.py [--runs 5] [NOTEBOOK]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

from backprop_ninja.assign import REPO

DEFAULT = REPO / "examples" / "submitted" / "ada" / "backprop_ninja" / "backprop_ninja.ipynb"


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", nargs="?", default=str(DEFAULT))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    grade_times, import_times = [], []
    with tempfile.TemporaryDirectory() as out:
        grade = [sys.executable, "-m", "backprop_ninja", "grade", args.notebook, "--out", out]
        bare = [sys.executable, "-c", "import torch"]
        wall(grade)  # warm the file cache once; every timed run below is still a fresh process
        for _ in range(args.runs):
            grade_times.append(wall(grade))
            import_times.append(wall(bare))
    g, i = statistics.median(grade_times), statistics.median(import_times)
    print(f"backprop-ninja grade (whole command): median {g:.2f} s  runs {', '.join(f'{t:.2f}' for t in grade_times)}")
    print(f"python -c 'import torch':            median {i:.2f} s  runs {', '.join(f'{t:.2f}' for t in import_times)}")
    print(f"grading beyond the torch import:     {g - i:.2f} s   (goal for the whole command: <= 1.5 s)")


if __name__ == "__main__":
    main()
