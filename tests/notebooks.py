"""Build submission notebooks for the grader's tests: answer cells carry nbgrader metadata."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat

from backprop_ninja import units

STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
# The width the notebook wraps a failed check's message to under nbgrader (the assignment source's VALIDATE_WIDTH):
# Validate's dialog does not wrap lines.
VALIDATE_WIDTH = int(re.search(r"^VALIDATE_WIDTH = (\d+)", (Path(__file__).resolve().parent.parent / "source" /
                                                              "backprop_ninja.py").read_text(), re.MULTILINE).group(1))


def answer_cell(grade_id: str, source: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source.strip("\n"))
    cell.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False, "grade_id": grade_id,
                                 "schema_version": 3}
    return cell


def write_submission(path: Path, answers: dict[str, str], *, blank_rest: bool = True) -> Path:
    """A notebook with a markdown header and one answer cell per unit, in table order: the given code,
    or the blank stub for units not in `answers` (left out entirely if blank_rest is False)."""
    cells = [nbformat.v4.new_markdown_cell("# Backprop Ninja: a test submission")]
    for unit in units.UNITS:
        if unit.grade_id in answers:
            cells.append(answer_cell(unit.grade_id, answers[unit.grade_id]))
        elif blank_rest:
            cells.append(answer_cell(unit.grade_id, STUB))
    notebook = nbformat.v4.new_notebook(cells=cells)
    path.write_text(nbformat.writes(notebook), encoding="utf-8")
    return path
