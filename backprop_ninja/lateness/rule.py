"""The late-submission rule, the same for nbgrader and for the kit's batch: how late, and how many points it costs.

A submission is late by the seconds between the student's due date (the course's, moved by any extension) and the
moment it was handed in. Within the grace period it costs nothing; after it, every started day late costs a fixed
fraction of the assignment's maximum points, up to a cap. The penalty never exceeds the points earned, as nbgrader's
AssignLatePenalties also ensures, so both graders report the same number. Pure arithmetic: no config, no files.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

DAY_SECONDS = 24 * 3600
Extension = timedelta | datetime | None  # extra time, a personal due date, or none


@dataclass(frozen=True)
class PenaltyPolicy:
    per_day: float = 0.1          # fraction of the maximum points lost per started day late
    cap: float = 1.0              # the most that lateness can cost, as a fraction of the maximum points
    grace_seconds: float = 0.0    # this much late costs nothing (upload delays, clock skew)


@dataclass(frozen=True)
class Assessment:
    due: datetime                 # the student's own due date, extension included
    late_seconds: float           # 0 when on time
    penalty: float                # points taken off the total


def student_due(due: datetime, extension: Extension) -> datetime:
    """The due date that holds for one student: the course's, later by extra time, or replaced by a personal one."""
    if extension is None:
        return due
    if isinstance(extension, timedelta):
        return due + extension
    return extension


def seconds_late(submitted_at: datetime, due: datetime) -> float:
    return max(0.0, (submitted_at - due).total_seconds())


def penalty_points(late_seconds: float, score: float, max_points: float, policy: PenaltyPolicy) -> float:
    """Points lost for handing in `late_seconds` late: per started day (counted from the due date, not from the end
    of the grace period), capped, and never more than the `score` earned nor less than 0."""
    if late_seconds <= policy.grace_seconds:
        return 0.0
    days_started = math.ceil(late_seconds / DAY_SECONDS)
    fraction = min(policy.cap, days_started * policy.per_day)
    return round(max(0.0, min(score, fraction * max_points)), 4)


def assess(submitted_at: datetime, due: datetime, extension: Extension, policy: PenaltyPolicy,
           score: float, max_points: float) -> Assessment:
    """The whole rule for one submission. Times must be timezone-aware (or all naive UTC)."""
    own_due = student_due(due, extension)
    late = seconds_late(submitted_at, own_due)
    return Assessment(own_due, late, penalty_points(late, score, max_points, policy))
