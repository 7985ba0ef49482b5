"""Find each unit's answer cell in a submitted notebook, by its nbgrader grade_id.

Tolerant on purpose: cells may be moved, duplicated (the last one that is not the blank stub wins),
retyped to markdown or raw (read as code), and their source may be a string or a list of lines.
A notebook of version 2 or 3 (cells inside worksheets) is upgraded to version 4 first, cell by cell as nbformat's
own reader does (tests/test_notebook_versions.py compares the two), so the CLI, the batch and the Gradescope
bundle grade it exactly as nbgrader, which reads every notebook through nbformat, does. Older ones are refused.
Anything that stops us from reading the file at all is a submission-level error (data, not an exception).
This runs in the trusted grader process, so it is bounded: only a regular file is opened (never a link,
pipe or device), at most `max_notebook_bytes` are read, and deep nesting cannot crash the parser.
"""
from __future__ import annotations

import ast
import errno
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from backprop_ninja import units
from backprop_ninja.grade import limits, syntax


@dataclass
class Extraction:
    answers: dict[str, str] = field(default_factory=dict)  # grade_id -> code of its answer cell
    stubs: set[str] = field(default_factory=set)            # grade_ids whose only cells are the blank stub
    problems: dict[str, str] = field(default_factory=dict)  # grade_id -> why its answer cell is not run (too big)
    error: str | None = None                                # why the file could not be read as a notebook
    positions: dict[str, int] = field(default_factory=dict)  # grade_id -> index of its answer cell in the notebook
    # (index, source) of the code cells with no nbgrader grade_id: the student's own (definitions.py reads them)
    added: list[tuple[int, str]] = field(default_factory=list)


_RESUBMIT = "submit the .ipynb file itself, as saved by Jupyter"


class _Unreadable(Exception):
    """Why the submitted path cannot be read as a notebook; read_answers turns it into Extraction.error."""


def read_answers(path: str | Path, *, max_notebook_bytes: int = limits.MAX_NOTEBOOK_BYTES,
                 max_cell_bytes: int = limits.MAX_CELL_BYTES) -> Extraction:
    """The answer cells of the notebook at `path`. Never raises for anything the file holds."""
    path = Path(path)
    try:
        text = _read_notebook_file(path, max_notebook_bytes).decode("utf-8")
    except _Unreadable as error:
        return Extraction(error=str(error))
    except UnicodeDecodeError:
        return Extraction(error=f"{path} is not a notebook: it is not UTF-8 text")
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError as error:
        return Extraction(error=f"{path} is not a notebook: invalid JSON at line {error.lineno}, "
                                f"column {error.colno} ({error.msg}); {_RESUBMIT}")
    except (RecursionError, MemoryError):
        return Extraction(error=f"{path} is not a notebook: its JSON is nested too deeply to read; {_RESUBMIT}")
    except ValueError as error:  # e.g. a number with more digits than Python converts
        return Extraction(error=f"{path} is not a notebook: {error}; {_RESUBMIT}")
    try:
        cells = notebook_cells(notebook, path)
    except _Unreadable as error:
        return Extraction(error=str(error))
    return answers_from_cells(cells, max_cell_bytes=max_cell_bytes)


# ---- one reading of every notebook version ----

WORKSHEET_VERSIONS = (2, 3)   # cells inside worksheets; upgraded here the way nbformat upgrades them
_RESAVE = "open it in Jupyter and save it (Jupyter saves version 4), then submit the .ipynb file"


def notebook_cells(notebook, path: Path) -> list:
    """The notebook's cells as version 4 has them: upgraded from version 2 or 3, refused below that."""
    version = notebook.get("nbformat") if isinstance(notebook, dict) else None
    if type(version) is int and version in WORKSHEET_VERSIONS:  # not bool: True is no version
        return _upgraded_cells(notebook, version, path)
    if type(version) is int and version < min(WORKSHEET_VERSIONS):
        raise _Unreadable(f"{path} is a Jupyter notebook of version {version}, older than the grader reads "
                          f"(versions 2 to 4): {_RESAVE}")
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        raise _Unreadable(f"{path} is JSON but not a Jupyter notebook (version 4): it has no list of cells")
    return cells


def _upgraded_cells(notebook: dict, version: int, path: Path) -> list:
    """Every worksheet's cells, in order, as version 4 cells (nbformat.v4.convert.upgrade flattens them too)."""
    worksheets = notebook.get("worksheets")
    if not isinstance(worksheets, list):
        raise _Unreadable(f"{path} says it is a Jupyter notebook of version {version}, but it has no list of "
                          f"worksheets, where that version keeps its cells: {_RESAVE}")
    cells = []
    for worksheet in worksheets:
        inner = worksheet.get("cells") if isinstance(worksheet, dict) else None
        if isinstance(inner, list):
            cells.extend(_upgraded_cell(cell, version) for cell in inner)
    return cells


def _upgraded_cell(cell, version: int):
    """One cell as nbformat's v3 reader and v4 upgrade leave it: a code cell's `input` becomes its source, a
    heading cell becomes a markdown cell `# title`, an html cell a markdown cell; metadata (grade_id) is kept."""
    if not isinstance(cell, dict):
        return cell  # answers_from_cells skips it
    upgraded = dict(cell)
    kind = cell.get("cell_type")
    if kind == "code":
        upgraded.pop("input", None)
        upgraded["source"] = _joined_lines(cell.get("input", ""), version)
    else:
        upgraded["source"] = _joined_lines(cell.get("source", ""), version)
    if kind == "heading":
        level = cell.get("level", 1)
        level = level if type(level) is int and 0 <= level <= 6 else 1  # a heading has 1 to 6 '#'s
        title = upgraded["source"] if isinstance(upgraded["source"], str) else ""
        upgraded.update(cell_type="markdown", source="#" * level + " " + " ".join(title.splitlines()))
        upgraded.pop("level", None)
    elif kind == "html":
        upgraded["cell_type"] = "markdown"
    return upgraded


def _joined_lines(value, version: int):
    """A source saved as a list of lines, joined as nbformat's reader of that version joins it."""
    if not isinstance(value, list):
        return value  # a string as it is; anything else cell_source reads as ""
    lines = [line for line in value if isinstance(line, str)]
    if version == 3 and lines and lines[0].endswith(("\n", "\r")):
        return "".join(lines)  # written with splitlines(True): the line ends are in the lines
    return "\n".join(lines)


def _read_notebook_file(path: Path, limit: int) -> bytes:
    """At most limit + 1 bytes of the regular file at `path`; anything else raises _Unreadable."""
    try:
        # lstat first, so a pipe or device is never even opened (opening one can block or have side effects).
        _require_regular_file(path, os.lstat(path).st_mode)
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _Unreadable(f"{path}: no such file") from None
    except OSError as error:
        if error.errno == errno.ELOOP:  # swapped for a symbolic link after the lstat
            raise _Unreadable(_not_a_file(path, "a symbolic link")) from None
        raise _Unreadable(f"{path} could not be read: {error.strerror or error}") from None
    except ValueError as error:  # a path with a NUL byte in it
        raise _Unreadable(f"{str(path)!r} could not be read: {error}") from None
    try:
        opened = os.fstat(descriptor)
        _require_regular_file(path, opened.st_mode)  # what was opened, in case the path changed since the lstat
        if opened.st_size > limit:
            raise _Unreadable(_too_big(path, opened.st_size, limit))
        chunks, remaining = [], limit + 1
        while remaining > 0:
            chunk = os.read(descriptor, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as error:
        raise _Unreadable(f"{path} could not be read: {error.strerror or error}") from None
    finally:
        os.close(descriptor)
    data = b"".join(chunks)
    if len(data) > limit:  # the file grew after the fstat
        raise _Unreadable(_too_big(path, len(data), limit))
    return data


_FILE_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"),
               (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"))


def _require_regular_file(path: Path, mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for is_kind, name in _FILE_KINDS if is_kind(mode)), "not a regular file")
    raise _Unreadable(_not_a_file(path, kind))


def _not_a_file(path: Path, kind: str) -> str:
    return f"{path} is {kind}, not a notebook file, so the grader does not read it; {_RESUBMIT}"


def _too_big(path: Path, size: int, limit: int) -> str:
    return (f"{path} is {_mebibytes(size)}, over the grader's limit of {_mebibytes(limit)} for a notebook: "
            f"clear the outputs (Edit > Clear Outputs of All Cells, then save), remove any data pasted into "
            f"the notebook, and submit again")


def _mebibytes(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB" if size >= 1 << 20 else f"{size} bytes"


def answers_from_cells(cells: list, *, max_cell_bytes: int = limits.MAX_CELL_BYTES) -> Extraction:
    found = Extraction()
    for index, cell in enumerate(cells):
        grade_id = _grade_id(cell)
        if grade_id is None:
            _keep_added_cell(found, index, cell, max_cell_bytes)
        if grade_id not in units.BY_ID:
            continue
        source = cell_source(cell)
        size = len(source.encode("utf-8", "surrogatepass"))
        if size > max_cell_bytes:
            # Too big to scan or run, but still the student's latest attempt: it replaces an earlier answer.
            found.problems[grade_id] = _cell_too_big(units.BY_ID[grade_id], size, max_cell_bytes)
            found.answers.pop(grade_id, None)
            found.stubs.discard(grade_id)
            continue
        if is_blank_stub(source):
            if grade_id not in found.answers and grade_id not in found.problems:
                found.stubs.add(grade_id)
            continue
        found.answers[grade_id] = source  # a later real answer replaces an earlier one
        found.positions[grade_id] = index
        found.stubs.discard(grade_id)
        found.problems.pop(grade_id, None)
    return found


def _keep_added_cell(found: Extraction, index: int, cell, max_cell_bytes: int) -> None:
    """Keep a code cell the student added, for its definitions; one over the cell size limit is left out."""
    if not isinstance(cell, dict) or cell.get("cell_type") != "code":
        return
    source = cell_source(cell)
    if source.strip() and len(source.encode("utf-8", "surrogatepass")) <= max_cell_bytes:
        found.added.append((index, source))


def _cell_too_big(unit: units.Unit, size: int, limit: int) -> str:
    return (f"the answer cell {unit.grade_id} is {_mebibytes(size)}, over the grader's limit of "
            f"{_mebibytes(limit)} for one cell, so it was not run: keep only the code that computes {unit.answer} "
            f"(no pasted data) and submit again")


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

    A cell that does not parse (a syntax error, nesting too deep for the parser, a character that is not
    text) is not blank: the student wrote something, and the static scan reports why it cannot be read.
    """
    try:
        return all(_is_filler(statement) for statement in syntax.tree(source).body)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False


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
