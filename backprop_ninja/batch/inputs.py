"""Finding the submissions: an nbgrader course or submitted/ tree, a folder of notebooks, or a zip.

Where a notebook (or a student's folder) is expected, only what `os.lstat` says is a regular file (or a
real folder) is used: a symbolic link, a pipe, a device or a socket is never followed, opened or hashed;
the student gets a row that says what was found instead.
"""
from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path

from backprop_ninja.batch.ids import (compile_id_pattern, is_notebook_name, refuse_duplicate_ids, safe_student_id,
                                      student_id_from_name)
from backprop_ninja.batch.submission import BatchError, Submission
from backprop_ninja.batch.unzip import unzip_notebooks
from backprop_ninja.export.safe_text import terminal_text

ASSIGNMENT = "backprop_ninja"          # the nbgrader assignment name: submitted/<student>/backprop_ninja/
CHECKPOINTS = ".ipynb_checkpoints"
SUBMIT_THE_FILE = "submit the notebook file itself"


def discover(source: Path, work_dir: Path, id_pattern: str | None = None) -> list[Submission]:
    """The submissions under `source`: an nbgrader course or submitted/ tree, a folder of notebooks, or a zip.

    `work_dir` is where a zip is unpacked. Raises BatchError when the input is not usable.
    """
    source = Path(source)
    pattern = compile_id_pattern(id_pattern)
    if source.is_file() and source.suffix.lower() == ".zip":
        folder, refused = unzip_notebooks(source, work_dir)
        found = []
        for sub in _discover_folder(folder, pattern):
            inside = sub.path.relative_to(folder).as_posix()
            found.append(Submission(sub.student_id, sub.path, f"{source}!{inside}", refused.get(inside, sub.refused)))
    elif source.is_dir():
        found = _discover_folder(source, pattern)
    elif not source.exists():
        raise BatchError(f"{source} does not exist; give the folder or .zip file that holds the submissions.")
    else:
        raise BatchError(f"{source} is neither a folder nor a .zip file; give a folder of notebooks, "
                         f"an nbgrader course folder (with submitted/), or a zip of notebooks.")
    refuse_duplicate_ids(found)
    if not found:
        raise BatchError(f"No notebooks (*.ipynb) found in {source}.")
    return sorted(found, key=lambda s: s.student_id)


def not_a_regular_file(mode: int) -> str | None:
    """What a directory entry is, when it is not a regular file: 'a symbolic link', 'a named pipe (FIFO)', ..."""
    kinds = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"),
             (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device file"), (stat.S_ISBLK, "a device file"))
    if stat.S_ISREG(mode):
        return None
    return next((kind for is_kind, kind in kinds if is_kind(mode)), "not a regular file")


def _lstat_mode(path: Path) -> int | None:
    try:
        return os.lstat(path).st_mode
    except OSError:
        return None


def _refusal(path: Path) -> str | None:
    """Why the notebook at `path` is not graded, or None when it is a regular file."""
    mode = _lstat_mode(path)
    if mode is None:
        return f"{path.name} could not be examined (it vanished or is unreadable); {SUBMIT_THE_FILE}"
    kind = not_a_regular_file(mode)
    return f"{path.name} is {kind}; {SUBMIT_THE_FILE}" if kind else None


def _entries(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as listing:
        return sorted(listing, key=lambda entry: entry.name)


def _discover_folder(folder: Path, pattern: re.Pattern | None) -> list[Submission]:
    if (folder / "submitted").is_dir():  # the course's own folder: followed even if it is a link
        folder = folder / "submitted"
    try:
        entries = _entries(folder)
    except OSError as error:
        raise BatchError(f"Cannot read the folder {folder} ({error.strerror}); check its permissions.") from error
    if any(_is_student_folder(entry) for entry in entries):
        return _discover_nbgrader(entries)
    found = []
    for notebook in _notebooks_under(folder):
        student_id = student_id_from_name(notebook.name, pattern)
        if student_id is not None:
            found.append(Submission(student_id, notebook, str(notebook), _refusal(notebook)))
    return found


def _is_student_folder(entry: os.DirEntry) -> bool:
    """A real folder (not a link) with an entry named like the assignment: submitted/<student>/backprop_ninja."""
    return entry.is_dir(follow_symlinks=False) and os.path.lexists(os.path.join(entry.path, ASSIGNMENT))


def _discover_nbgrader(entries: list[os.DirEntry]) -> list[Submission]:
    found = []
    for entry in entries:
        if entry.is_symlink():  # in submitted/ every entry is a student's folder; a link one is not entered
            path = Path(entry.path)
            found.append(Submission(safe_student_id(entry.name), path, str(path),
                                    f"the student's folder {entry.name} is a symbolic link; "
                                    f"put the folder itself in {path.parent}"))
        elif _is_student_folder(entry):
            found.append(_nbgrader_submission(Path(entry.path)))
    return found


def _nbgrader_submission(student_dir: Path) -> Submission:
    """One student of an nbgrader submitted/ tree. Several notebooks: the one named like the assignment."""
    student = safe_student_id(student_dir.name)
    assignment_dir = student_dir / ASSIGNMENT
    kind = not_a_regular_file(_lstat_mode(assignment_dir) or 0)
    if kind != "a folder":
        return Submission(student, assignment_dir, str(assignment_dir),
                          f"{assignment_dir} is {kind or 'a file'}, not a folder; put the assignment's folder "
                          f"itself there")
    try:
        notebooks = [Path(e.path) for e in _entries(assignment_dir) if is_notebook_name(e.name)]
    except OSError as error:  # one student's unreadable folder is that student's row, not a stop
        return Submission(student, assignment_dir, str(assignment_dir),
                          f"{assignment_dir} cannot be read ({error.strerror}); check its permissions")
    preferred = [p for p in notebooks if p.name == f"{ASSIGNMENT}.ipynb"]
    chosen = preferred[0] if preferred else (notebooks[0] if len(notebooks) == 1 else None)
    if chosen is None:
        # No notebook, or several and none named like the assignment: the engine's row will say why.
        listed = ", ".join(p.name for p in notebooks) or "no .ipynb file"
        return Submission(student, assignment_dir, f"{assignment_dir} ({listed})")
    return Submission(student, chosen, str(chosen), _refusal(chosen))


def _notebooks_under(folder: Path) -> list[Path]:
    """Every *.ipynb entry under `folder`, whatever it is; linked folders are listed, never entered."""
    notebooks = []
    # followlinks=False (the default): a linked folder shows up in `dirs` but is not walked into
    for root, dirs, files in os.walk(folder, onerror=_warn_unreadable):
        root_path = Path(root)
        dirs[:] = sorted(d for d in dirs if d != CHECKPOINTS)
        for name in dirs:
            if not is_notebook_name(name) and os.path.islink(root_path / name):
                print(f"batch: not looking inside {terminal_text(root_path / name)}: it is a symbolic link to a "
                      f"folder; copy the folder itself there if it holds submissions", file=sys.stderr)
        notebooks.extend(root_path / name for name in sorted(files + dirs) if is_notebook_name(name))
    return notebooks


def _warn_unreadable(error: OSError) -> None:
    print(f"batch: cannot read {terminal_text(error.filename)} ({error.strerror}); the notebooks in it are not "
          f"graded. Check its permissions and run the batch again.", file=sys.stderr)
