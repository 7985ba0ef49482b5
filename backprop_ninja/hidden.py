"""The hook that nbgrader's hidden test cells call: `assert grade_unit("ex1_probs")`.

In-kernel code cannot be trusted (the student's cells ran in the same kernel), so the hook does no grading itself:
the first call runs the standalone grader on the notebook file in a separate process, caches its verdicts, and
every call returns one unit's verdict. nbgrader and `backprop-ninja grade` therefore give the same points.
What this cannot protect against is written in docs/grader.md ("Grading inside nbgrader").
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

_verdicts: dict[str, dict] | None = None
_failure: str | None = None


def _notebook_path() -> str | None:
    """The notebook being graded: nbgrader runs the kernel in the notebook's folder."""
    explicit = os.environ.get("BACKPROP_NINJA_SUBMISSION")
    if explicit:
        return explicit
    if os.path.isfile("backprop_ninja.ipynb"):
        return "backprop_ninja.ipynb"
    found = sorted(glob.glob("*.ipynb"))
    return found[0] if len(found) == 1 else None


def _grade_once() -> None:
    global _verdicts, _failure
    # Set first: if the run below is interrupted (a cell time limit), later cells report it instead of rerunning.
    _verdicts, _failure = {}, "the grader was interrupted before it finished"
    path = _notebook_path()
    if path is None:
        _verdicts, _failure = {}, "the grader could not find the notebook file in the working folder"
        return
    proc = subprocess.run([sys.executable, "-m", "backprop_ninja", "grade", path, "--json"],
                          capture_output=True, text=True, timeout=600)
    try:
        results = json.loads(proc.stdout)
        _verdicts, _failure = {t["name"]: t for t in results["tests"]}, None
    except (ValueError, KeyError):
        _verdicts, _failure = {}, f"the grader did not run (exit code {proc.returncode})"


def grade_unit(unit: str) -> bool:
    """Print this unit's verdict and return whether it passed. Never writes to stderr."""
    if _verdicts is None:
        _grade_once()
    test = _verdicts.get(unit)
    if test is None:
        print(f"{unit}: not graded: {_failure or 'no verdict for this unit'}")
        return False
    print(f"{unit}: {test['extra_data']['status']} ({test['score']:g}/{test['max_score']:g}) {test['output']}")
    return test["score"] == test["max_score"]
