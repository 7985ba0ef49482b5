"""A throwaway nbgrader course for the tests: build it, hand in notebooks, run nbgrader, read the gradebook.

Everything runs the real `nbgrader` commands in a temporary folder with this repository's nbgrader_config.py, never
in the repository itself.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from backprop_ninja import assign
from backprop_ninja.assign import ASSIGNMENT, REPO
from backprop_ninja.nbgrader_plugins import TEST_CELL_PREFIX  # the test cell of unit <grade_id> is test_<grade_id>

COURSE_ID = "backprop_ninja"          # c.CourseDirectory.course_id in nbgrader_config.py
CELL_TIMEOUT_VAR = "BACKPROP_NINJA_CELL_TIMEOUT"
SHORT_TRAINING_STEPS = "200"          # the notebook's training loop only has to run, not to converge


@dataclass(frozen=True)
class UnitScore:
    points: float
    max_points: float
    needs_manual_grade: bool


def course_env(names_file: Path, **extra: str) -> dict[str, str]:
    """The environment of every nbgrader command: the venv's bin on PATH (for `alembic`), the data, a short run."""
    env = assign.nbgrader_env(str(names_file))
    env["BACKPROP_NINJA_STEPS"] = SHORT_TRAINING_STEPS
    # nbgrader only logs an exception in nbgrader_config.py and then runs unhardened; in tests that must fail.
    env["TRAITLETS_APPLICATION_RAISE_CONFIG_FILE_ERROR"] = "1"
    env.pop("BACKPROP_NINJA_NO_ISOLATION", None)  # isolation is on unless a run turns it off itself
    env.pop(CELL_TIMEOUT_VAR, None)
    env.update(extra)
    return env


def make_course(root: Path, names_file: Path) -> Path:
    """Copy the config and the text source into `root` and build the source notebook and the release there."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    shutil.copytree(REPO / "source", root / "source", ignore=shutil.ignore_patterns("*.ipynb", ".ipynb_checkpoints"))
    with pytest.MonkeyPatch.context() as patch:  # assign.build runs nbgrader with a copy of os.environ
        for name, value in course_env(names_file).items():
            patch.setenv(name, value)
        assign.build(root, names_path=str(names_file), solutions=False)
    return root


def notebook_at(root: Path, folder: str, student: str | None = None) -> Path:
    """<root>/<folder>/[<student>/]backprop_ninja/backprop_ninja.ipynb"""
    base = root / folder / student if student else root / folder
    return base / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"


def read_notebook(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def hand_in(root: Path, student: str, nb: nbformat.NotebookNode) -> Path:
    """Place a submission where `nbgrader autograde` looks for it."""
    path = notebook_at(root, "submitted", student)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(nb) + "\n")
    return path


def start_nbgrader(root: Path, env: dict[str, str], *args: str) -> subprocess.Popen:
    """Start `python -m nbgrader ARGS` in the course folder (nbgrader reads nbgrader_config.py from the cwd)."""
    return start([sys.executable, "-m", "nbgrader", *args], root, env)


def start(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start a command in its own process group, so that stop() also ends the kernels it started."""
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def stop(procs: list[subprocess.Popen]) -> None:
    """Kill the process groups of commands that are still running (after a failure elsewhere)."""
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def finish(proc: subprocess.Popen) -> str:
    """Wait for an nbgrader command; fail the test with its log if it did not exit 0. Returns its log."""
    out, err = proc.communicate()
    command = " ".join(proc.args[2:])
    assert proc.returncode == 0, f"`{command}` exited {proc.returncode}:\n{(out + err)[-4000:]}"
    return err


def run_nbgrader(root: Path, env: dict[str, str], *args: str) -> str:
    return finish(start_nbgrader(root, env, *args))


def unit_scores(root: Path, student: str) -> dict[str, UnitScore]:
    """grade_id -> the gradebook's score of its test cell, for one autograded student."""
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id=COURSE_ID) as gradebook:
        notebook = gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
        return {grade.name.removeprefix(TEST_CELL_PREFIX):
                UnitScore(grade.auto_score, grade.max_score, grade.needs_manual_grade)
                for grade in notebook.grades}


def cell_with_id(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    """The one cell whose nbgrader grade_id is `grade_id`."""
    found = [cell for cell in nb.cells if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    assert len(found) == 1, f"expected one cell with grade_id {grade_id!r}, found {len(found)}"
    return found[0]


def add_cells_after(nb: nbformat.NotebookNode, grade_id: str, cells: list) -> None:
    """Cells of the student's own, right after the cell `grade_id`: the kernel runs them there, and the grader
    replays only their definitions, so what they do in the kernel is what a test looks at, not an answer."""
    index = nb.cells.index(cell_with_id(nb, grade_id))
    nb.cells[index + 1:index + 1] = cells


def cell_after(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    """The cell right after the cell `grade_id` (one that add_cells_after put there)."""
    return nb.cells[nb.cells.index(cell_with_id(nb, grade_id)) + 1]


def stream_text(cell: nbformat.NotebookNode, name: str) -> str:
    """Everything the cell wrote to the stream `name` ("stdout" or "stderr")."""
    return "".join(out.get("text", "") for out in cell.get("outputs", [])
                   if out.output_type == "stream" and out.get("name") == name)
