"""Grade every submission of tests/corpus.py and hold each unit to its expected verdict.

The whole corpus is graded once per module, in this process (torch is imported once); the tests
then read the results. Short time limits keep the endless loops cheap.
"""
from __future__ import annotations

import re

import pytest

from backprop_ninja import units
from backprop_ninja.export import format_table
from backprop_ninja.grade import grade_notebook
from backprop_ninja.grade.verdict import OK, RIGHT_BY_LUCK, STRICT_RULES, WRONG
from corpus import CORPUS, Submission, write_submission

LIMITS = {"unit_timeout": 3.0, "total_timeout": 60.0}
# A number with a fraction or an exponent: gradients are such numbers; shapes, n, axes and counts are not.
REAL_NUMBER = re.compile(r"\d\.\d|\d[eE][-+]?\d")




@pytest.fixture(scope="module")
def graded(tmp_path_factory, names_file, release, solutions):
    folder = tmp_path_factory.mktemp("corpus")
    return {s.name: grade_notebook(write_submission(s, folder / s.name, release, solutions), code=s.code, **LIMITS)
            for s in CORPUS}


def test_the_corpus_covers_what_issue_3_asks_for():
    kinds = {s.kind for s in CORPUS}
    assert len(CORPUS) >= 40 and kinds == {"mistake", "alternative", "cheat", "fault"}
    mistaken = {gid for s in CORPUS if s.kind == "mistake" for gid in s.expected}
    assert {u.grade_id for u in units.UNITS} <= mistaken, "every unit needs at least one typical mistake"


@pytest.mark.parametrize("submission", CORPUS, ids=lambda s: s.name)
def test_each_unit_gets_its_expected_status(graded, submission: Submission):
    result = graded[submission.name]
    statuses = {v.unit: v.status for v in result.verdicts}
    assert statuses == submission.expected_status(), "\n" + format_table(result)
    if submission.file_error is not None:
        assert submission.file_error in result.error
    else:
        assert result.error is None


@pytest.mark.parametrize("submission", [s for s in CORPUS if any(e.words for e in s.expected.values())],
                         ids=lambda s: s.name)
def test_messages_name_the_mistake(graded, submission: Submission):
    verdicts = graded[submission.name].by_unit()
    for grade_id, expect in submission.expected.items():
        message = verdicts[grade_id].message.lower()
        for words in expect.words:
            assert words.lower() in message, f"{grade_id}: {verdicts[grade_id].message!r} lacks {words!r}"


def test_only_answers_right_by_luck_get_a_note(graded):
    """The rule probe notes exactly the corpus's right-by-luck answers, with words from the table; no other verdict
    of the corpus changes (a right answer that reads no upstream, like Exercise 2's formula, gets no note)."""
    for submission in CORPUS:
        verdicts = graded[submission.name].by_unit()
        for unit in units.UNITS:
            expect = submission.expected.get(unit.grade_id)
            note = verdicts[unit.grade_id].note
            if expect is None or not expect.note:
                assert note is None, (submission.name, unit.grade_id, note)
                continue
            assert note and verdicts[unit.grade_id].points == unit.points, (submission.name, unit.grade_id)
            for words in expect.note:
                assert words.lower() in note.lower(), f"{unit.grade_id}: {note!r} lacks {words!r}"


LUCKY = [s for s in CORPUS if any(e.note for e in s.expected.values())]


@pytest.mark.parametrize("submission", LUCKY, ids=lambda s: s.name)
def test_strict_rules_give_right_by_luck_no_points(tmp_path, names_file, release, solutions, submission):
    path = write_submission(submission, tmp_path / submission.name, release, solutions)
    result = grade_notebook(path, **LIMITS, strict_rules=True)
    assert result.rules == STRICT_RULES
    lucky = {gid for gid, e in submission.expected.items() if e.note}
    for verdict in result.verdicts:
        if verdict.unit in lucky:
            assert (verdict.status, verdict.points, bool(verdict.note)) == (RIGHT_BY_LUCK, 0, True), verdict
            assert "strict rule policy" in verdict.message and verdict.note in verdict.message
        else:
            assert verdict.status == OK, "\n" + format_table(result)


def test_wrong_answers_earn_nothing_and_right_ones_everything(graded):
    for submission in CORPUS:
        for verdict in graded[submission.name].verdicts:
            assert verdict.points == (verdict.max_points if verdict.status == OK else 0)
            if verdict.status == WRONG:
                assert verdict.message and verdict.message != "wrong", (submission.name, verdict.unit)


def test_no_message_gives_an_answer_away(graded, solutions):
    solution_lines = {line.strip() for code in solutions.values() for line in code.splitlines()
                      if len(line.strip()) > 12}
    for submission in CORPUS:
        result = graded[submission.name]
        for verdict in result.verdicts:
            # the forward line of a unit may be quoted (it holds 1e-5); nothing else with a fraction may be
            text = verdict.message.replace(units.BY_ID[verdict.unit].forward, "")
            assert not REAL_NUMBER.search(text), (submission.name, verdict.unit, verdict.message)
            assert "BEGIN" not in text and "assert" not in text.lower(), (submission.name, verdict.message)
            assert not any(line in text for line in solution_lines), (submission.name, verdict.message)
