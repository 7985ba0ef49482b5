"""`backprop-ninja demo`: grade the shipped example submissions, with nbgrader and with our own grader.

The demo never writes a committed file: it does not run `backprop-ninja assign` (rebuilding the notebooks is the
instructor's explicit step), and nbgrader, whose `generate_assignment` rewrites release/ and whose gradebook is
needed by `autograde`, runs in a temporary copy of the course, removed afterwards. Only the repository's git-ignored
out/demo/ folder (or --out) is written.

1. copy nbgrader_config.py and the committed source notebook into a temporary course root, and run
   `nbgrader generate_assignment` there (it fills that course's gradebook);
2. copy examples/submitted/<student>/ into its submitted/ folder and `nbgrader autograde` them (our grader grades
   each notebook before nbgrader's sandboxed kernel runs it, and each test cell gets its unit's verdict;
   docs/nbgrader.md), and print each student's points per unit from nbgrader's gradebook;
3. grade the same folder with `backprop-ninja grade` (batch), write results.json per student, grades.csv and the
   cohort report into out/demo/, and check that both front ends gave the same points. The printed tables are also
   saved as out/demo/demo.txt.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from backprop_ninja import units
from backprop_ninja.assign import ASSIGNMENT, REPO, nbgrader_env, run_nbgrader

# git-ignored, and a folder of its own: an instructor's class grades in out/grades (the README's example) survive it
DEFAULT_OUT = REPO / "out" / "demo"


def copy_examples(root: Path) -> list[str]:
    students = sorted(p.name for p in (REPO / "examples" / "submitted").iterdir() if p.is_dir())
    for student in students:
        dest = root / "submitted" / student
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(REPO / "examples" / "submitted" / student, dest)
    return students


def prepare_course(course: Path, env: dict[str, str]) -> list[str]:
    """A course root outside the repository: the config, the committed source notebook, the gradebook filled by
    `nbgrader generate_assignment`, and the example submissions. Returns the students."""
    course.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "nbgrader_config.py", course / "nbgrader_config.py")
    shutil.copytree(REPO / "source" / ASSIGNMENT, course / "source" / ASSIGNMENT,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    run_nbgrader(["generate_assignment", ASSIGNMENT, "--force"], course, env)
    return copy_examples(course)


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


def format_matrix(title: str, points: dict[str, dict[str, float]]) -> str:
    lines = [f"\n{title}", f"{'student':10s} {'total':>7s}  units lost"]
    for student, by_unit in points.items():
        lost = [u.grade_id for u in units.UNITS if (by_unit.get(u.grade_id) or 0) < u.points]
        total = sum(by_unit.get(u.grade_id) or 0 for u in units.UNITS)
        listed = "all of them" if len(lost) == len(units.UNITS) else ", ".join(lost) or "-"
        lines.append(f"{student:10s} {total:3g}/{units.TOTAL_POINTS:<3d}  {listed}")
    return "\n".join(lines)


def main(out: Path = DEFAULT_OUT) -> int:
    from backprop_ninja.data import names_path
    from backprop_ninja.grade import isolation

    # the temporary course has no data/ folder: point nbgrader's kernels at the kit's verified names.txt
    env = nbgrader_env(str(names_path()))
    missing = isolation.unavailable_reason()
    no_isolation = []
    summary: list[str] = []

    def say(text: str) -> None:
        print(text, flush=True)
        summary.append(text)

    if missing:  # the shipped examples are ours, so grading them unisolated is safe; a class's work is not
        env[isolation.NO_ISOLATION_ENV] = "1"
        no_isolation = ["--no-isolation"]
        say(f"student code runs WITHOUT isolation in this demo: {missing}. That is safe for these trusted "
            f"examples; to grade a class, {isolation.FIX}.")
    else:
        say("student code runs isolated (bubblewrap sandbox, see docs/grader.md#isolation)")

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="backprop-ninja-demo-") as tmp:
        course = Path(tmp) / "course"
        print(f"nbgrader runs in a temporary copy of the course ({course}); no committed file is written")
        students = prepare_course(course, env)  # a failing nbgrader command exits with its log (SystemExit)
        say(f"autograding {len(students)} example submissions with nbgrader ({', '.join(students)}) ...")
        run_nbgrader(["autograde", ASSIGNMENT, "--force"], course, env)
        from_nbgrader = nbgrader_points(course, students)
        say(format_matrix("nbgrader autograde (points per unit from the gradebook):", from_nbgrader))

        print(f"\ngrading the same submissions with `backprop-ninja grade submitted --out {out / 'grades'}` ...")
        batch = subprocess.run([sys.executable, "-m", "backprop_ninja", "grade", str(course / "submitted"),
                                "--out", str(out / "grades"), *no_isolation], cwd=course, env=env)
    subprocess.run([sys.executable, "-m", "backprop_ninja", "report", str(out / "grades"),
                    "--out", str(out / "report")], cwd=out, env=env, check=False)

    ours = results_points(out / "grades", students)
    say(format_matrix("backprop-ninja grade (points per unit from each results.json):", ours))
    same = all(ours[s] == {k: from_nbgrader[s].get(k) for k in ours[s]} for s in students)
    say(f"\nnbgrader and backprop-ninja agree on every unit of every student: {'yes' if same else 'NO'}")
    (out / "demo.txt").write_text("\n".join(summary) + "\n")
    print(f"per-student results.json and feedback.html, grades.csv: {out / 'grades'}")
    print(f"cohort report (CSV, heatmap, HTML):  {out / 'report'}")
    print(f"these tables: {out / 'demo.txt'}")
    return 0 if same and batch.returncode == 0 else 1


def add_arguments(parser) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="where the reports and tables go (default: this repository's git-ignored out/)")


def run(args) -> int:
    return main(args.out.resolve())
