"""The shape policy: strict by default; lenient accepts an intermediate's gradient off only by size-1 dimensions."""
from __future__ import annotations

import pytest

from backprop_ninja.grade import grade_notebook
from backprop_ninja.grade.compare import differs_by_size1_dims
from backprop_ninja.grade.verdict import LENIENT_SHAPE, OK, STRICT_SHAPE, WRONG
from corpus import Submission, write_submission

LIMITS = {"unit_timeout": 3.0, "total_timeout": 60.0}

# Each answer is right in value; only the shape differs. The comment says what lenient makes of it.
ANSWERS = {
    "ex1_bnmeani": "dbnmeani = (-dbndiff).sum(0)",                      # the lecture's: (64,) for (1, 64): accepted
    "ex1_counts_sum_inv": "dcounts_sum_inv = (counts * dprobs).sum(1)",  # (n,) for (n, 1): accepted
    "ex1_bnbias": "dbnbias = dhpreact.sum(0)",                          # a parameter: never accepted
    "ex1_bnvar_inv": "dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True).T",  # (64, 1) for (1, 64): not size-1 only
    "ex1_counts_sum": "dcounts_sum = (counts_sum**-2 * dcounts_sum_inv).view(-1)",  # (n,), and the sign is wrong
}
ACCEPTED_WHEN_LENIENT = {"ex1_bnmeani", "ex1_counts_sum_inv"}


@pytest.fixture(scope="module")
def submission_path(tmp_path_factory, release, solutions, names_file):
    folder = tmp_path_factory.mktemp("shapes")
    return write_submission(Submission("shapes", "mistake", ANSWERS), folder, release, solutions)


@pytest.mark.parametrize("policy", [STRICT_SHAPE, LENIENT_SHAPE])
def test_only_intermediates_off_by_size1_dimensions_pass_when_lenient(policy, submission_path):
    result = grade_notebook(submission_path, **LIMITS, shape=policy)
    assert result.shape == policy
    verdicts = result.by_unit()
    for grade_id in ANSWERS:
        accepted = policy == LENIENT_SHAPE and grade_id in ACCEPTED_WHEN_LENIENT
        verdict = verdicts[grade_id]
        assert verdict.status == (OK if accepted else WRONG), (grade_id, verdict.message)
        assert verdict.points == (verdict.max_points if accepted else 0)
        if accepted:  # the student still learns about the shape
            assert "lenient shape policy" in verdict.message and "keepdim" in verdict.message
    others = [v for gid, v in verdicts.items() if gid not in ANSWERS]
    assert all(v.status == OK for v in others), [(v.unit, v.message) for v in others if v.status != OK]


def test_the_default_is_strict(submission_path):
    result = grade_notebook(submission_path, **LIMITS)
    assert result.shape == STRICT_SHAPE and result.by_unit()["ex1_bnmeani"].status == WRONG


def test_an_unknown_policy_is_refused_before_grading(submission_path):
    with pytest.raises(ValueError, match="strict, lenient"):
        grade_notebook(submission_path, **LIMITS, shape="loose")


@pytest.mark.parametrize("shape, target, expected", [
    ((64,), (1, 64), True), ((1, 64), (64,), True), ((32,), (32, 1), True), ((1, 1, 64), (64,), True),
    ((64, 1), (1, 64), False), ((64,), (64,), False), ((32, 64), (64,), False), ((2, 64), (1, 64), False),
])
def test_size1_dimensions_only_in_order(shape, target, expected):
    assert differs_by_size1_dims(shape, target) is expected
