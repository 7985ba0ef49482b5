"""Rows for submissions that could not be graded: every unit 0, and the reason, in both result formats.

Two kinds: the submission's own (its grader process died or hung, the engine raised: final, like a grade, unless
--retry-failed), and the machine's (a sandbox box could not start twice, the canary stopped passing): those say so,
blame no one, and the next run grades them again by itself."""
from __future__ import annotations

CRASHED = "crashed"                       # every unit's status in a row of the submission's own fault
ENVIRONMENT_FAULT = "environment_fault"   # every unit's status in a row of the machine's fault
ENVIRONMENT = "environment"               # result["fault"] and the record's "fault" for such a row


def environment_reason(detail: str) -> str:
    """The error of a row that the machine, not the student, failed: what happened and what to do."""
    return (f"environment fault, not the student's: the grading machine failed while grading this submission "
            f"({detail}); no grade was given. Run the same grade command again once the machine is healthy: "
            f"this row is graded again by itself")


def fault_result(reason: str, units: list, execution_time: float = 0.0, isolation: str = "",
                 environment: bool = False) -> dict:
    """A SubmissionResult-shaped dict for a submission the batch could not grade: every unit 0.

    `isolation` is the batch's isolation mode when known (the student's code ran under it before the fault),
    "" when nothing of the submission ran. `environment`: the machine's fault (see environment_reason)."""
    status = ENVIRONMENT_FAULT if environment else CRASHED
    return {
        "error": reason, "execution_time": execution_time, "isolation": isolation,
        "fault": ENVIRONMENT if environment else "",
        "verdicts": [{"unit": grade_id, "status": status, "points": 0.0, "max_points": float(points),
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


def is_environment_fault(record: dict | None) -> bool:
    """Whether a stored record is a row of the machine's fault (graded again by the next run)."""
    return bool(record) and record.get("fault") == ENVIRONMENT
