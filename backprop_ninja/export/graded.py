"""A graded folder read back for the exports: GRADED_DIR/grades.csv (the scores) and the units' maximum points.

grades.csv is the source, as the instructor sees it: its `total` (or the total after a late penalty, where the batch
wrote one) is the score an export hands on. The maximum points of each unit are not in grades.csv; they come from
the records in the students' results.json (every record carries the units table). Light on purpose: no torch.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from backprop_ninja.batch.records import CSV_NAME, RESULTS_NAME, read_record
from backprop_ninja.export.csv_export import NOT_GRADED_YET
from backprop_ninja.export.safe_text import terminal_text

# The score after a late penalty, where grades.csv has it; the first of these present wins over `total`.
PENALISED_TOTAL_COLUMNS = ("total_after_penalty",)
ENVIRONMENT_FAULT = "environment_fault"  # a unit's status when the machine, not the student, failed (batch/faults.py)
REQUIRED_COLUMNS = ("student_id", "total", "max")


class ExportError(Exception):
    """An export cannot be written (a missing or malformed input); the message says which file and what to do."""


@dataclass
class GradedStudent:
    student_id: str
    points: dict[str, float]      # unit -> points, before any late penalty
    statuses: dict[str, str]      # unit -> status ("" where the submission was not graded)
    total: float                  # the sum of the units' points
    score: float                  # what an export hands on: the total after the late penalty, if any
    max_points: float
    not_final: str = ""           # why this row's score is not a grade yet (rerun the batch), else ""


@dataclass
class GradedClass:
    folder: Path
    units: list[tuple[str, float]]          # (unit, max points) in grades.csv's order
    students: list[GradedStudent] = field(default_factory=list)
    score_column: str = "total"             # the grades.csv column the scores came from


def read_graded(folder: str | Path) -> GradedClass:
    folder = Path(folder)
    grades = folder / CSV_NAME
    if not folder.is_dir():
        raise ExportError(f"{terminal_text(folder)} is not a folder; give the folder that "
                          f"`backprop-ninja grade ... --out FOLDER` wrote.")
    if not grades.is_file():
        raise ExportError(f"{terminal_text(grades)} not found; grade the class into this folder first "
                          f"(`backprop-ninja grade CLASS --out {terminal_text(folder)}`).")
    try:
        with open(grades, newline="", encoding="utf-8") as file:
            rows = list(csv.reader(file))
    except (OSError, UnicodeDecodeError) as error:
        raise ExportError(f"{terminal_text(grades)} cannot be read ({error}); grade the class again to rewrite it.")
    if not rows:
        raise ExportError(f"{terminal_text(grades)} is empty; grade the class again to rewrite it.")
    header = rows[0]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise ExportError(f"{terminal_text(grades)} has no column {', '.join(missing)}: it was not written by "
                          f"`backprop-ninja grade`. Give the folder that command wrote.")
    unit_names = header[header.index("source") + 1:header.index("total")] if "source" in header else []
    score_column = next((name for name in PENALISED_TOTAL_COLUMNS if name in header), "total")
    units = _unit_maxima(folder, unit_names)
    graded = GradedClass(folder, units, score_column=score_column)
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise ExportError(f"{terminal_text(grades)}, line {line}: {len(row)} cells where the header has "
                              f"{len(header)}; the file was changed by hand or cut short. Grade the class again.")
        graded.students.append(_student(dict(zip(header, row)), unit_names, score_column, grades, line))
    return graded


def _student(cells: dict[str, str], unit_names: list[str], score_column: str, grades: Path,
             line: int) -> GradedStudent:
    def number(column: str) -> float:
        text = cells[column].strip()
        try:
            return float(text) if text else 0.0
        except ValueError:
            raise ExportError(f"{terminal_text(grades)}, line {line}: column {column} holds "
                              f"{terminal_text(text)!r}, not a number. Grade the class again.") from None

    statuses = {unit: cells.get(f"{unit}_status", "") for unit in unit_names}
    error = cells.get("error", "")
    not_final = ""
    if error == NOT_GRADED_YET:
        not_final = "not graded yet (the batch stopped before it)"
    elif any(status == ENVIRONMENT_FAULT for status in statuses.values()):
        not_final = "the grading machine failed on it (an environment fault, not the student's)"
    total = number("total")
    score = number(score_column) if cells.get(score_column, "").strip() else total
    return GradedStudent(student_id=original_id(cells["student_id"]),
                         points={unit: number(unit) for unit in unit_names}, statuses=statuses,
                         total=total, score=score, max_points=number("max"), not_final=not_final)


def original_id(cell: str) -> str:
    """The student id as the batch named it: grades.csv guards ids that start like a formula with a leading quote
    (export/safe_text.py). Batch ids never hold a quote (batch/ids.py), so a leading one is always that guard."""
    return cell[1:] if cell.startswith("'") else cell


def _unit_maxima(folder: Path, unit_names: list[str]) -> list[tuple[str, float]]:
    """Each unit's maximum from the first record that has the units table; the units table itself otherwise."""
    for results in sorted(folder.glob(f"*/{RESULTS_NAME}")):
        record = read_record(results)
        if record and record.get("units"):
            maxima = {str(unit): float(points) for unit, points in record["units"]}
            if all(name in maxima for name in unit_names):
                return [(name, maxima[name]) for name in unit_names]
    from backprop_ninja import units  # imports torch: only when no record could tell

    unknown = [name for name in unit_names if name not in units.BY_ID]
    if unknown:
        raise ExportError(f"{terminal_text(folder / CSV_NAME)} has units this kit does not know "
                          f"({terminal_text(', '.join(unknown))}) and no results.json says their points; grade the "
                          f"class again with this version of the kit.")
    return [(name, float(units.BY_ID[name].points)) for name in unit_names]


def format_points(value: float):
    """2.0 -> 2, 0.5 -> 0.5: whole points read as whole numbers in a spreadsheet (and in an LMS)."""
    value = float(value)
    return int(value) if value.is_integer() else round(value, 4)
