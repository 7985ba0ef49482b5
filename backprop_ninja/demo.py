"""`backprop-ninja demo`: grade the shipped example submissions, with nbgrader and with our own grader.

1. copy examples/submitted/<student>/ into the course's submitted/ folder;
2. `nbgrader autograde` them (our grader grades each notebook before nbgrader's sandboxed kernel runs it, and each
   test cell gets its unit's verdict; docs/nbgrader.md), and print each student's points per unit from nbgrader's
   gradebook;
3. grade the same folder with `backprop-ninja grade` (batch), write results.json per student, grades.csv and the
   cohort report, and check that both front ends gave the same points.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from backprop_ninja import units
from backprop_ninja.assign import ASSIGNMENT, REPO, nbgrader_env


def copy_examples(root: Path) -> list[str]:
    students = sorted(p.name for p in (REPO / "examples" / "submitted").iterdir() if p.is_dir())
    for student in students:
        dest = root / "submitted" / student
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(REPO / "examples" / "submitted" / student, dest)
    return students


def nbgrader_points(root: Path, students: list[str]) -> dict[str, dict[str, float]]:
    """student -> grade_id -> points, read from nbgrader's gradebook (test cells are named test_<grade_id>)."""
    from nbgrader.api import Gradebook

    from backprop_ninja.nbgrader_plugins import TEST_CELL_PREFIX

    points = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id=ASSIGNMENT) as gb:
        for student in students:
            notebook = gb.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
            points[student] = {g.name.removeprefix(TEST_CELL_PREFIX): g.score for g in notebook.grades
                               if g.name.startswith(TEST_CELL_PREFIX)}
    return points


def results_points(folder: Path, students: list[str]) -> dict[str, dict[str, float]]:
    """student -> grade_id -> points, read from folder/<student>/results.json (Gradescope's schema)."""
    return {s: {t["name"]: t["score"] for t in json.loads((folder / s / "results.json").read_text())["tests"]}
            for s in students}


def print_matrix(title: str, points: dict[str, dict[str, float]]) -> None:
    print(f"\n{title}")
    print(f"{'student':10s} {'total':>7s}  units lost")
    for student, by_unit in points.items():
        lost = [u.grade_id for u in units.UNITS if (by_unit.get(u.grade_id) or 0) < u.points]
        total = sum(by_unit.get(u.grade_id) or 0 for u in units.UNITS)
        listed = "all of them" if len(lost) == len(units.UNITS) else ", ".join(lost) or "-"
        print(f"{student:10s} {total:3g}/{units.TOTAL_POINTS:<3d}  {listed}")


def main(root: Path = REPO) -> int:
    from backprop_ninja.grade import isolation

    env = nbgrader_env()
    missing = isolation.unavailable_reason()
    no_isolation = []
    if missing:  # the shipped examples are ours, so grading them unisolated is safe; a class's work is not
        env[isolation.NO_ISOLATION_ENV] = "1"
        no_isolation = ["--no-isolation"]
        print(f"student code runs WITHOUT isolation in this demo: {missing}. That is safe for these trusted "
              f"examples; to grade a class, {isolation.FIX}.")
    else:
        print("student code runs isolated (bubblewrap sandbox, see docs/grader.md#isolation)")
    students = copy_examples(root)
    print(f"autograding {len(students)} example submissions with nbgrader ({', '.join(students)}) ...")
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force",
                           f"--CourseDirectory.root={root}"], cwd=root, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        print("nbgrader autograde failed; see the log above.", file=sys.stderr)
        return 1
    from_nbgrader = nbgrader_points(root, students)
    print_matrix("nbgrader autograde (points per unit from the gradebook):", from_nbgrader)

    out = root / "out"
    print("\ngrading the same submissions with `backprop-ninja grade submitted --out out/grades` ...")
    batch = subprocess.run([sys.executable, "-m", "backprop_ninja", "grade", str(root / "submitted"),
                            "--out", str(out / "grades"), *no_isolation], cwd=root, env=env)
    subprocess.run([sys.executable, "-m", "backprop_ninja", "report", str(out / "grades"),
                    "--out", str(out / "report")], cwd=root, env=env, check=False)

    ours = results_points(out / "grades", students)
    print_matrix("backprop-ninja grade (points per unit from each results.json):", ours)
    same = all(ours[s] == {k: from_nbgrader[s].get(k) for k in ours[s]} for s in students)
    print(f"\nnbgrader and backprop-ninja agree on every unit of every student: {'yes' if same else 'NO'}")
    print(f"per-student results.json and feedback.html, grades.csv: {out / 'grades'}")
    print(f"cohort report (CSV, heatmap, HTML):  {out / 'report'}")
    return 0 if same and batch.returncode == 0 else 1


def add_arguments(parser) -> None:
    parser.add_argument("--root", type=Path, default=REPO, help="course root (default: this repository)")


def run(args) -> int:
    return main(args.root.resolve())
