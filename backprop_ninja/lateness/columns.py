"""grades.csv's lateness columns, filled when grades.csv is written (never in a worker), so that a new due date or
extension only needs the batch run again, not a regrade:

    submitted_at          when the student handed in (UTC, ISO 8601), from --submission-times or timestamp.txt
    due                   the student's own due date (extension included), UTC
    late_by               for people: '1 d 10 h 0 min', 'on time', or why the time is unknown
    late_seconds          for sorting and formulas
    penalty               points taken off (lateness/rule.py)
    total_after_penalty   total - penalty; `total` keeps its meaning, the points the answers earned

Without a due date (no c.Lateness.due) the columns stay empty and total_after_penalty equals total.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from backprop_ninja.lateness.rule import assess, student_due
from backprop_ninja.lateness.settings import CoursePolicy
from backprop_ninja.lateness.submitted import SubmissionTime, timestamp_beside
from backprop_ninja.lateness.times import iso_utc, readable_duration

LATE_COLUMNS = ["submitted_at", "due", "late_by", "late_seconds", "penalty", "total_after_penalty"]
UNKNOWN_TIME = "submission time unknown (give --submission-times)"


@dataclass
class LateBook:
    """What the batch knows about lateness: the course's policy (None: no due date) and the times from a CSV."""
    policy: CoursePolicy | None = None
    times: dict[str, datetime] = field(default_factory=dict)
    assignment: str = "backprop_ninja"  # timestamp.txt is read only inside an nbgrader assignment folder

    def submission_time(self, student_id: str, notebook: Path) -> SubmissionTime:
        """The CSV wins over timestamp.txt: the platform's clock, not a file from the student's side."""
        if student_id in self.times:
            return SubmissionTime(self.times[student_id])
        return timestamp_beside(Path(notebook), self.assignment)


def add_late_columns(rows: list[list], paths: dict[str, Path], book: LateBook | None) -> tuple[list[list], int]:
    """`rows` of grades_table (header first) with the lateness columns appended; also how many students' times
    were unknown while a due date was set."""
    header = rows[0]
    total_col, max_col = header.index("total"), header.index("max")
    out, unknown = [header + LATE_COLUMNS], 0
    for row in rows[1:]:
        student_id, total, max_points = row[0], float(row[total_col]), float(row[max_col])
        cells = _late_cells(student_id, paths.get(student_id), total, max_points, book)
        unknown += cells[0] == "" and book is not None and book.policy is not None
        out.append(row + cells)
    return out, unknown


def _late_cells(student_id: str, notebook: Path | None, total: float, max_points: float,
                book: LateBook | None) -> list:
    if book is None or book.policy is None:
        return ["", "", "", "", "", _number(total)]
    policy = book.policy
    extension = policy.extension_for(student_id)
    time = book.submission_time(student_id, notebook) if notebook is not None else SubmissionTime(None)
    if time.at is None:
        reason = f"{time.problem}; {UNKNOWN_TIME}" if time.problem else UNKNOWN_TIME
        return ["", iso_utc(student_due(policy.due, extension)), reason, "", 0, _number(total)]
    result = assess(time.at, policy.due, extension, policy.policy, total, max_points)
    late_by = "on time" if result.late_seconds == 0 else readable_duration(result.late_seconds)
    if 0 < result.late_seconds <= policy.policy.grace_seconds:
        late_by += " (within the grace period)"
    return [iso_utc(time.at), iso_utc(result.due), late_by, _number(round(result.late_seconds)),
            _number(result.penalty), _number(total - result.penalty)]


def _number(value: float):
    value = float(value)
    return int(value) if value.is_integer() else round(value, 4)
