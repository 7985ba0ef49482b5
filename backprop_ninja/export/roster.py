"""The class roster: a CSV that maps the kit's student ids to the LMS's own columns.

The easiest roster is the LMS's own gradebook export (Canvas: Grades, Export): its leading columns are the ones its
import needs. One column (the match column) holds what the kit calls the student: the notebook's file name or
nbgrader's student folder. Its values are compared as the batch makes ids (batch/ids.py: characters other than
letters, digits and `._@+-` become `_`) and without regard to case, since LMS logins and file names differ in both.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from backprop_ninja.batch.ids import safe_student_id
from backprop_ninja.csv_input import CsvUnreadable, read_rows
from backprop_ninja.export.graded import ExportError
from backprop_ninja.export.safe_text import terminal_text

POINTS_POSSIBLE = "Points Possible"  # the label of the row of maximum points in a Canvas gradebook export


@dataclass
class RosterStudent:
    line: int                    # line of the roster file, for messages
    cells: dict[str, str]        # column -> value, as in the file
    key: str                     # the match column's value, compared as an id ("" when the cell is empty)


@dataclass
class Roster:
    path: Path
    columns: list[str]
    match_column: str
    students: list[RosterStudent]


def match_key(value: str) -> str:
    """How a roster value and a batch id are compared: made an id the batch's way, then case-folded."""
    return safe_student_id(value).casefold() if value.strip() else ""


def read_roster(path: str | Path, match_column: str) -> Roster:
    path = Path(path)
    shown = terminal_text(path)
    try:
        rows = read_rows(path)
    except CsvUnreadable as why:
        if why.missing:
            raise ExportError(f"roster {shown} not found; export it from the LMS (Canvas: Grades, Export) or write "
                              f"a CSV with a header row and give its path with --roster.") from None
        raise ExportError(f"roster: {terminal_text(why)}") from None
    if not rows:
        raise ExportError(f"roster {shown} is empty; it needs a header row and one row per student.")
    columns = [name.strip() for name in rows[0]]
    if match_column not in columns:
        raise ExportError(f"roster {shown} has no column {terminal_text(match_column)!r} (its columns: "
                          f"{terminal_text(', '.join(columns))}); name the column that holds the students' ids "
                          f"with --match-column.")
    students, seen = [], {}
    for line, row in enumerate(rows[1:], start=2):
        cells = dict(zip(columns, (cell.strip() for cell in row)))
        if not any(cells.values()) or POINTS_POSSIBLE in row[0]:
            continue  # a blank line, or the export's row of maximum points: not a student
        student = RosterStudent(line, cells, match_key(cells.get(match_column, "")))
        if student.key and student.key in seen:
            raise ExportError(f"roster {shown}: lines {seen[student.key]} and {line} have the same "
                              f"{terminal_text(match_column)} {terminal_text(cells[match_column])!r} (compared "
                              f"as ids, ignoring case); each student may appear once. Fix the roster.")
        seen.setdefault(student.key, line)
        students.append(student)
    return Roster(path, columns, match_column, students)
