"""The long-format CSV: one row per student per unit, for a spreadsheet's pivot table, pandas or R.

Columns: student_id, unit, points, max_points, status. A student's points over their rows add up to grades.csv's
`total` (before any late penalty, which applies to the whole submission and stays in grades.csv). A submission that
could not be graded has status `not_graded` on every unit.
"""
from __future__ import annotations

from backprop_ninja.export.graded import GradedClass, format_points

LONG_COLUMNS = ["student_id", "unit", "points", "max_points", "status"]
NOT_GRADED = "not_graded"


def long_rows(graded: GradedClass) -> list[list]:
    """Rows, header first (raw values: the caller writes them through safe_text.csv_rows)."""
    rows = [list(LONG_COLUMNS)]
    for student in graded.students:
        for unit, max_points in graded.units:
            rows.append([student.student_id, unit, format_points(student.points[unit]), format_points(max_points),
                         student.statuses[unit] or NOT_GRADED])
    return rows
