"""Find each unit's answer cell in a submitted notebook, by its nbgrader grade_id.

Tolerant on purpose: cells may be moved, duplicated (the last one that is not the blank stub wins),
retyped to markdown or raw (read as code), and their source may be a string or a list of lines.
Anything that stops us from reading the file at all is a submission-level error (data, not an exception).
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

from backprop_ninja import units


@dataclass
class Extraction:
    answers: dict[str, str] = field(default_factory=dict)  # grade_id -> code of its answer cell
    stubs: set[str] = field(default_factory=set)            # grade_ids whose only cells are the blank stub
    error: str | None = None                                # why the file could not be read as a notebook


def read_answers(path: str | Path) -> Extraction:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Extraction(error=f"{path}: no such file")
    except IsADirectoryError:
        return Extraction(error=f"{path} is a directory, not a notebook file")
    except UnicodeDecodeError:
        return Extraction(error=f"{path} is not a notebook: it is not UTF-8 text")
    except OSError as error:
        return Extraction(error=f"{path} could not be read: {error.strerror or error}")
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError as error:
        return Extraction(error=f"{path} is not a notebook: invalid JSON at line {error.lineno}, "
                                f"column {error.colno} ({error.msg}); submit the .ipynb file as saved by Jupyter")
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        return Extraction(error=f"{path} is JSON but not a Jupyter notebook (version 4): it has no list of cells")
    return answers_from_cells(cells)


def answers_from_cells(cells: list) -> Extraction:
    found = Extraction()
    for cell in cells:
        grade_id = _grade_id(cell)
        if grade_id not in units.BY_ID:
            continue
        source = cell_source(cell)
        if is_blank_stub(source):
            if grade_id not in found.answers:
                found.stubs.add(grade_id)
            continue
        found.answers[grade_id] = source  # a later real answer replaces an earlier one
        found.stubs.discard(grade_id)
    return found


def _grade_id(cell) -> str | None:
    if not isinstance(cell, dict):
        return None
    metadata = cell.get("metadata")
    nbgrader = metadata.get("nbgrader") if isinstance(metadata, dict) else None
    grade_id = nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None
    return grade_id if isinstance(grade_id, str) else None


def cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    if isinstance(source, list):
        return "".join(part for part in source if isinstance(part, str))
    return source if isinstance(source, str) else ""


def is_blank_stub(source: str) -> bool:
    """True for a cell with nothing but comments, `pass`, strings and `raise NotImplementedError(...)`.

    A cell that does not parse is not blank: the student wrote something, and the static scan
    reports the syntax error.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return all(_is_filler(statement) for statement in tree.body)


def _is_filler(statement: ast.stmt) -> bool:
    if isinstance(statement, ast.Pass):
        return True
    if isinstance(statement, ast.FunctionDef):
        return all(_is_filler(inner) for inner in statement.body)  # Exercise 4's stub sits inside a def
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
        return True  # a docstring or a bare `...`
    if isinstance(statement, ast.Raise) and statement.exc is not None:
        raised = statement.exc.func if isinstance(statement.exc, ast.Call) else statement.exc
        return isinstance(raised, ast.Name) and raised.id == "NotImplementedError"
    return False
