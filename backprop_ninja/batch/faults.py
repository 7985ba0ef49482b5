"""Rows for submissions that could not be graded: every unit 0, and the reason, in both result formats."""
from __future__ import annotations


def fault_result(reason: str, units: list, execution_time: float = 0.0, isolation: str = "") -> dict:
    """A SubmissionResult-shaped dict for a submission the batch could not grade: every unit 0.

    `isolation` is the batch's isolation mode when known (the student's code ran under it before the fault),
    "" when nothing of the submission ran."""
    return {
        "error": reason, "execution_time": execution_time, "isolation": isolation,
        "verdicts": [{"unit": grade_id, "status": "crashed", "points": 0.0, "max_points": float(points),
                      "message": f"not graded: {reason}", "exact": None, "max_diff": None}
                     for grade_id, points in units],
    }


def fault_gradescope(reason: str, units: list, execution_time: float = 0.0) -> dict:
    """A valid Gradescope results.json saying the submission could not be graded, and why."""
    return {
        "score": 0.0, "execution_time": round(execution_time, 3),
        "output": f"This submission could not be graded: {reason}",
        "visibility": "visible", "stdout_visibility": "hidden",
        "tests": [{"name": grade_id, "score": 0.0, "max_score": float(points), "status": "failed",
                   "output": f"not graded: {reason}", "visibility": "visible"} for grade_id, points in units],
    }
