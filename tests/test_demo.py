"""`backprop-ninja demo` leaves a clone's git tree as it found it: it runs nbgrader in a temporary course and writes
only the git-ignored out/ folder, and it still prints both grade tables and whether they agree."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from backprop_ninja.assign import REPO

from folders import own_folder


CLASS_GRADES = "student_id,total\nreal_student,31\n"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=demo-test", "-c", "user.email=demo@test", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout


def tracked_stamps(root: Path) -> dict[str, tuple[int, int]]:
    """path -> (mtime_ns, size) of every tracked file: a rewrite with the same content changes the mtime."""
    return {p: ((root / p).stat().st_mtime_ns, (root / p).stat().st_size)
            for p in git(root, "ls-files", "-z").split("\0") if p}


@pytest.fixture(scope="module")
def clone():
    """A clone-like copy of the kit: its tracked files, committed in a fresh git repository (no data/names.txt)."""
    with own_folder("backprop-ninja-demo-test-", "BACKPROP_NINJA_KEEP_TMP") as tmp:
        root = tmp / "kit"
        for path in git(REPO, "ls-files", "-z").split("\0"):
            if path and (REPO / path).is_file():
                (root / path).parent.mkdir(parents=True, exist_ok=True)
                (root / path).write_bytes((REPO / path).read_bytes())
        git(root, "init", "-q")
        git(root, "add", ".")
        git(root, "commit", "-q", "-m", "snapshot")
        yield root


@pytest.fixture(scope="module")
def demo_run(clone, names_file):
    before = tracked_stamps(clone)
    # a class graded as the README shows (`--out out/grades`) before the demo runs: it must survive the demo
    class_grades = clone / "out" / "grades" / "grades.csv"
    class_grades.parent.mkdir(parents=True)
    class_grades.write_text(CLASS_GRADES)
    env = {**os.environ, "PYTHONPATH": str(clone), "BACKPROP_NINJA_NAMES": str(names_file),
           "BACKPROP_NINJA_STEPS": "200"}
    proc = subprocess.run([sys.executable, "-m", "backprop_ninja", "demo"], cwd=clone, env=env,
                          capture_output=True, text=True, timeout=600)
    return proc, before


def test_demo_runs_the_clones_code(demo_run, clone):
    proc, _ = demo_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"these tables: {clone / 'out' / 'demo' / 'demo.txt'}" in proc.stdout  # REPO was the clone, not this checkout


def test_demo_writes_under_out_demo_only_and_a_class_grades_survive(demo_run, clone):
    assert (clone / "out" / "grades" / "grades.csv").read_text() == CLASS_GRADES
    assert sorted(p.name for p in (clone / "out").iterdir()) == ["demo", "grades"]
    assert sorted(p.name for p in (clone / "out" / "grades").iterdir()) == ["grades.csv"]
    assert (clone / "out" / "demo" / "grades" / "grades.csv").is_file()


def test_demo_leaves_the_git_tree_clean(demo_run, clone):
    _, before = demo_run
    assert git(clone, "status", "--porcelain") == ""
    assert tracked_stamps(clone) == before, "the demo rewrote a committed file"
    ignored = git(clone, "status", "--porcelain", "--ignored").split("\n")
    written = {line[3:] for line in ignored if line.startswith("!! ")}
    assert written == {"out/"}, written  # the reports; nbgrader's submitted/, autograded/ and gradebook stay in a temp dir


def test_demo_prints_both_tables_and_that_they_agree(demo_run, clone):
    proc, _ = demo_run
    out = proc.stdout
    assert "student code runs isolated" in out or "student code runs WITHOUT isolation" in out
    assert "nbgrader autograde (points per unit from the gradebook):" in out
    assert "backprop-ninja grade (points per unit from each results.json):" in out
    assert "nbgrader and backprop-ninja agree on every unit of every student: yes" in out
    for student in ("ada", "ben", "cleo"):
        assert out.count(f"\n{student} ") == 2
    saved = (clone / "out" / "demo" / "demo.txt").read_text()
    assert "agree on every unit of every student: yes" in saved and "ben " in saved
    for student in ("ada", "ben", "cleo"):
        assert (clone / "out" / "demo" / "grades" / student / "feedback.html").is_file()
