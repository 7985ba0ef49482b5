"""`backprop-ninja assign`: from the text source to the three notebooks, in order.

1. source/backprop_ninja.py (jupytext percent format, nbgrader metadata in the cell headers; it sits beside the
   assignment folder, not in it, so nbgrader never copies it and it cannot shadow the `backprop_ninja` package
   in a kernel that runs in that folder)
   -> source/backprop_ninja/backprop_ninja.ipynb, with cell ids taken from the grade_ids so that the output is the
   same on every run;
2. `nbgrader generate_assignment` -> release/backprop_ninja/backprop_ninja.ipynb (solutions blanked, hidden tests
   removed, the gradebook filled);
3. `nbgrader generate_solution` -> solutions/backprop_ninja/backprop_ninja.ipynb, executed on the short training
   schedule, without hidden tests.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat

ASSIGNMENT = "backprop_ninja"
REPO = Path(__file__).resolve().parent.parent
SHORT_STEPS = "1000"  # the training schedule the generated solutions show; students run the full one


def text_source(root: Path) -> Path:
    return root / "source" / f"{ASSIGNMENT}.py"


def notebook_path(root: Path, folder: str) -> Path:
    return root / folder / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"


TUTOR_CELL = "tutor"  # the grade_id of the cell that build_source_notebook fills with tutor.notebook_code()
COLLAPSED_SECTION = "setup_md"  # the heading of the set-up section (data, helpers, network): it opens collapsed
# Cells of machinery a student runs but need not read: shown collapsed (JupyterLab: source_hidden; Colab: a form
# showing only its title line), so that the notebook opens on the network and the exercises.
HIDDEN_CELLS = {
    "helpers": "The helpers check(), progress() and finite_difference(): run this cell (reading it is optional)",
    "diagnoses": "How check() names a likely mistake, with the grader's own code: run this cell",
    TUTOR_CELL: "hint() and show_graph(): run this cell",
}


def build_source_notebook(root: Path = REPO, with_hints: bool = True) -> Path:
    """Convert the text source to nbgrader's source notebook, deterministically, filling the tutor cell from the
    units table (with_hints=False: a course without the hint ladder; hint() then says so)."""
    from backprop_ninja import notebook_diagnoses, tutor

    nb = jupytext.read(text_source(root), fmt="py:percent")
    nb.metadata.pop("jupytext", None)
    nb.metadata["language_info"] = {"name": "python"}
    nb.nbformat, nb.nbformat_minor = 4, 5
    for index, cell in enumerate(nb.cells):
        # nbgrader needs stable, unique ids; the grade_id is both (and says nothing about hidden tests)
        cell["id"] = cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell-{index}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if cell["id"] == TUTOR_CELL:
            cell.source = tutor.notebook_code(with_hints=with_hints)
        if cell["id"] == notebook_diagnoses.CELL:
            cell.source = notebook_diagnoses.notebook_code()
        if cell["id"] in HIDDEN_CELLS:
            _collapse(cell, HIDDEN_CELLS[cell["id"]])
        if cell["id"] == COLLAPSED_SECTION:
            cell.metadata["jp-MarkdownHeadingCollapsed"] = True  # JupyterLab's collapsed heading: its section too
    out = notebook_path(root, "source")
    nbformat.validate(nb)
    out.write_text(nbformat.writes(nb) + "\n")
    return out


def _collapse(cell, title: str) -> None:
    """Show a cell collapsed: JupyterLab hides its source behind a bar; Colab shows it as a form with this title."""
    cell.metadata["jupyter"] = {"source_hidden": True}
    cell.metadata["cellView"] = "form"
    cell.source = f"# @title {title}\n" + cell.source


def nbgrader_env(names_path: str | None = None) -> dict[str, str]:
    """nbgrader shells out to `alembic`, so the interpreter's bin folder must be on PATH."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    # a config file that fails to load must stop nbgrader, not let it run without the hardening
    env["TRAITLETS_APPLICATION_RAISE_CONFIG_FILE_ERROR"] = "1"
    if names_path:
        env["BACKPROP_NINJA_NAMES"] = str(names_path)
    return env


def run_nbgrader(args: list[str], root: Path, env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "nbgrader", *args, f"--CourseDirectory.root={root}"]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"`nbgrader {' '.join(args)}` failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


def build(root: Path = REPO, names_path: str | None = None, solutions: bool = True, with_hints: bool = True) -> None:
    from backprop_ninja.data import names_path as default_names_path

    env = nbgrader_env(names_path or str(default_names_path()))
    print("source    ->", build_source_notebook(root, with_hints).relative_to(root))
    run_nbgrader(["generate_assignment", ASSIGNMENT, "--force"], root, env)
    print("release   ->", notebook_path(root, "release").relative_to(root))
    if solutions:
        run_nbgrader(["generate_solution", ASSIGNMENT, "--force"], root, {**env, "BACKPROP_NINJA_STEPS": SHORT_STEPS})
        tidy_executed(notebook_path(root, "solutions"))
        print("solutions ->", notebook_path(root, "solutions").relative_to(root))


def tidy_executed(path: Path) -> None:
    """Drop what changes from one execution to the next, so rebuilding leaves the committed file alone:
    execution timestamps, progress bars (stderr text and widgets, with their random ids) and how stdout
    happened to be split into chunks."""
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.outputs:
            if out.output_type == "stream" and out.name == "stderr":
                continue
            if "application/vnd.jupyter.widget-view+json" in out.get("data", {}):
                continue
            if out.output_type == "stream" and kept and kept[-1].output_type == "stream" and kept[-1].name == out.name:
                kept[-1].text += out.text
                continue
            kept.append(out)
        cell.outputs = kept
    path.write_text(nbformat.writes(nb) + "\n")


def add_arguments(parser) -> None:
    parser.add_argument("--root", type=Path, default=REPO, help="course root (default: this repository)")
    parser.add_argument("--no-solutions", action="store_true", help="skip generate_solution (it runs the notebook)")
    parser.add_argument("--no-hints", action="store_true",
                        help="build the release without the hint ladder (hint() then says hints are off)")


def run(args) -> int:
    build(args.root.resolve(), solutions=not args.no_solutions, with_hints=not args.no_hints)
    return 0


def solution_cells(root: Path = REPO) -> dict[str, str]:
    """grade_id -> the full answer cell of the solution source, with the nbgrader markers removed."""
    nb = jupytext.read(text_source(root), fmt="py:percent")
    cells = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            lines = [line for line in cell.source.splitlines() if line.strip() not in
                     ("### BEGIN SOLUTION", "### END SOLUTION")]
            cells[meta["grade_id"]] = "\n".join(lines)
    return cells
