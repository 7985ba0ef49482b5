"""A Canvas gradebook import CSV (Grades, Import) from a graded folder and a roster.

Canvas reads: a header row `Student, ID, SIS User ID, SIS Login ID, Section`, then one column per assignment named
`Name (assignment id)` (without an id Canvas looks the assignment up by name, or offers to create it); an optional
row whose first cell is `Points Possible`; then one row per student, found by ID, else SIS User ID, else SIS Login
ID, else name. An empty score cell changes nothing in Canvas. docs/batch.md has the details.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from backprop_ninja.export.graded import GradedClass, GradedStudent, format_points
from backprop_ninja.export.roster import POINTS_POSSIBLE, Roster, match_key

CANVAS_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
DEFAULT_ASSIGNMENT = "Backprop Ninja"
DEFAULT_MATCH_COLUMN = "SIS Login ID"


@dataclass
class CanvasExport:
    rows: list[list]                                             # header, Points Possible (optional), students
    scored: int = 0                                              # roster students given a score
    no_submission: list[str] = field(default_factory=list)      # roster students with no graded submission
    not_in_roster: list[GradedStudent] = field(default_factory=list)   # graded students the roster lacks
    not_final: list[GradedStudent] = field(default_factory=list)       # matched, but their row is not a grade yet
    no_key_lines: list[int] = field(default_factory=list)        # roster lines whose match column is empty


def assignment_header(name: str, assignment_id: str | None) -> str:
    return f"{name} ({assignment_id})" if assignment_id else name


def canvas_rows(graded: GradedClass, roster: Roster, *, assignment_name: str = DEFAULT_ASSIGNMENT,
                assignment_id: str | None = None, missing_as_zero: bool = False,
                points_possible: bool = True) -> CanvasExport:
    """The rows of the import file (raw values: the caller writes them through safe_text.csv_rows)."""
    by_key: dict[str, GradedStudent] = {}
    for student in graded.students:
        by_key.setdefault(match_key(student.student_id), student)
    max_points = max((s.max_points for s in graded.students), default=sum(p for _, p in graded.units))
    export = CanvasExport(rows=[CANVAS_COLUMNS + [assignment_header(assignment_name, assignment_id)]])
    if points_possible:
        export.rows.append([POINTS_POSSIBLE, "", "", "", "", format_points(max_points)])
    matched = set()
    for entry in roster.students:
        student = by_key.get(entry.key) if entry.key else None
        if not entry.key:
            export.no_key_lines.append(entry.line)
        if student is None:
            score = 0 if missing_as_zero else ""
            export.no_submission.append(entry.cells.get(roster.match_column) or f"(line {entry.line})")
        elif student.not_final:
            score = ""  # never a 0 the machine caused: rerun the batch, then export again
            export.not_final.append(student)
        else:
            score = format_points(student.score)
            export.scored += 1
        if student is not None:
            matched.add(student.student_id)
        export.rows.append([entry.cells.get(column, "") for column in CANVAS_COLUMNS] + [score])
    export.not_in_roster = [s for s in graded.students if s.student_id not in matched]
    return export
