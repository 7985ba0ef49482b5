"""The hook that nbgrader's hidden test cells call: `assert grade_unit("ex1_probs")`.

Under `nbgrader autograde` with our config it decides nothing: the grader graded the submission before the kernel
started, and nbgrader_plugins.ApplyEngineVerdicts replaces the test cells' outputs with those verdicts. The kernel
is told so (BACKPROP_NINJA_VERDICTS_OUTSIDE_KERNEL, set by SandboxedExecute), and this hook then only prints that
(sandboxed/graded_outside.py; in the sandboxed kernel that module answers this import itself, since the kit is not
in the sandbox).

Elsewhere (`nbgrader validate` on the source notebook, or an autograde chain without our steps) it still grades:
the first call runs the standalone grader on the notebook file in a separate process, caches its verdicts, and every
call returns one unit's verdict. In-kernel code cannot be trusted there (the student's cells ran in the same
kernel); docs/nbgrader.md says why autograde no longer relies on it.
"""
from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

OUTSIDE_VERDICTS_VAR = "BACKPROP_NINJA_VERDICTS_OUTSIDE_KERNEL"  # set in kernels by nbgrader_plugins.SandboxedExecute

_verdicts: dict[str, dict] | None = None
_failure: str | None = None


def _notebook_path() -> str | None:
    """The notebook being graded: nbgrader runs the kernel in the notebook's folder."""
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
    if os.environ.get(OUTSIDE_VERDICTS_VAR):
        from backprop_ninja.sandboxed import graded_outside

        return graded_outside.grade_unit(unit)
    if _verdicts is None:
        _grade_once()
    test = _verdicts.get(unit)
    if test is None:
        print(f"{unit}: not graded: {_failure or 'no verdict for this unit'}")
        return False
    print(f"{unit}: {test['extra_data']['status']} ({test['score']:g}/{test['max_score']:g}) {test['output']}")
    return test["score"] == test["max_score"]
