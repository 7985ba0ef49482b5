"""Attacks through `nbgrader autograde`: one real run on a throwaway course, five submissions.

alice hands in every answer right. Each attacker hands in the release with one attack in its first answer cell
(which nbgrader's kernel runs before any hidden test) and every other answer blank, so its honest score is 0:
- x_env points the hidden-test hook at alice's notebook (BACKPROP_NINJA_SUBMISSION);
- x_copy copies alice's notebook over the file nbgrader is executing;
- x_hidden puts a fake `backprop_ninja.hidden` whose grade_unit says True into sys.modules;
- x_forge, in the grader's worker, writes full marks to the grader's stdout through /proc and kills the grader;
  in the kernel, sets alice's scores to 0 in gradebook.db, and leaves a sleeper to do it again once nbgrader
  is done.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import security_attacks as attacks
import security_harness as h
from backprop_ninja import examples
from backprop_ninja.assign import ASSIGNMENT
from fixtures.correct_cells import CORRECT_CELLS
from nbgrader_course import course_env, hand_in, make_course, notebook_at, read_notebook, unit_scores

pytestmark = pytest.mark.isolation  # proves the sandbox: needs bubblewrap

CLASSMATE = "alice"
ATTACKERS = ("x_env", "x_copy", "x_hidden", "x_forge")


@dataclass
class GradedCourse:
    run: h.Run
    scores: dict[str, dict[str, float] | str]   # student -> grade_id -> points, or why there are none
    leftovers: list[str]


def read_scores(root: Path, student: str) -> dict[str, float] | str:
    try:
        return {unit: score.points for unit, score in unit_scores(root, student).items()}
    except Exception as error:  # noqa: BLE001 - a student missing from the gradebook is a finding, not a crash
        return f"no scores in the gradebook ({type(error).__name__}: {error})"


@pytest.fixture(scope="module")
def course(workdir, names_file) -> GradedCourse:
    root = make_course(workdir / "course", names_file)
    release = read_notebook(notebook_at(root, "release"))
    alice = notebook_at(root, "submitted", CLASSMATE)
    first_cells = {
        "x_env": attacks.redirect_submission_cell(str(alice)),
        "x_copy": attacks.copy_classmate_cell(str(alice), str(notebook_at(root, "autograded", "x_copy"))),
        "x_hidden": attacks.FAKE_HIDDEN_MODULE,
        "x_forge": attacks.nbgrader_forge_cell(h.MARK, str(root / "gradebook.db"), CLASSMATE),
    }
    hand_in(root, CLASSMATE, examples.filled(release, CORRECT_CELLS))
    for student, code in first_cells.items():
        hand_in(root, student, examples.filled(release, {"ex1_logprobs": code}))

    env = h.grader_env(workdir / "tmp", names_file, **course_env(names_file))
    done, leftovers = h.watched([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force"], env,
                                cwd=root, timeout=600, sleepers=True)
    return GradedCourse(done, {s: read_scores(root, s) for s in (CLASSMATE, *ATTACKERS)}, leftovers)


def test_autograde_runs_to_its_end(course):
    assert course.run.returncode == 0, course.run.log


def test_the_classmate_keeps_full_marks(course):
    scores = course.scores[CLASSMATE]
    assert isinstance(scores, dict), scores
    lost = {unit: points for unit, points in scores.items() if points != h.UNIT_POINTS[unit]}
    assert set(scores) == set(h.UNIT_POINTS) and not lost, f"alice lost points: {lost}"


@pytest.mark.parametrize("student", ATTACKERS)
def test_the_attack_earns_nothing(course, student):
    scores = course.scores[student]
    assert isinstance(scores, dict), scores
    earned = {unit: points for unit, points in scores.items() if points}
    assert not earned, f"{student} earned {sum(earned.values()):g} points with blank answers: {sorted(earned)}"


def test_nothing_of_the_run_is_left_behind(course):
    h.assert_nothing_left(course.run, course.leftovers)
