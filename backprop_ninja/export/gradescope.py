"""SubmissionResult -> Gradescope's results.json (https://gradescope-autograders.readthedocs.io)."""
from __future__ import annotations

import json
from pathlib import Path

from backprop_ninja.grade.verdict import SubmissionResult


def to_gradescope(result: SubmissionResult) -> dict:
    """One test per unit, named by its grade_id; our own status goes in extra_data."""
    tests = [
        {
            "name": verdict.unit,
            "score": verdict.points,
            "max_score": verdict.max_points,
            "status": "passed" if verdict.passed else "failed",
            "output": verdict.message,
            "visibility": "visible",
            "extra_data": {"status": verdict.status, **({"note": verdict.note} if verdict.note else {})},
        }
        for verdict in result.verdicts
    ]
    results = {"score": result.score, "execution_time": round(result.execution_time, 3), "tests": tests,
               "extra_data": {"isolation": result.isolation, "rules": result.rules, "shape": result.shape,
                              "code": result.code}}
    if result.error:
        results["output"] = f"This submission could not be graded: {result.error}"
    return results


def write_results(result: SubmissionResult, out_dir: str | Path) -> Path:
    """Write out_dir/results.json (creating out_dir); returns its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results.json"
    path.write_text(json.dumps(to_gradescope(result), indent=2) + "\n", encoding="utf-8")
    return path
