"""The hidden test suite's session: grade the submitted notebook once, share the verdicts.

    python -m pytest autograder --submission path/to/backprop_ninja.ipynb

Every test in test_units.py reads its unit's verdict from this one grading, so the notebook's cells
run once per session, in the grader's sandbox, whatever the number of tests.
"""
from __future__ import annotations

from pathlib import Path

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("backprop-ninja")
    group.addoption("--submission", metavar="NOTEBOOK", help="the submitted .ipynb to grade (required)")
    group.addoption("--unit-timeout", type=float, default=None, metavar="SECONDS",
                    help="time limit of one unit on all replays (default: the grader's)")
    group.addoption("--total-timeout", type=float, default=None, metavar="SECONDS",
                    help="time limit of the whole submission (default: the grader's)")


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to start (exit status 4, usage error) without a notebook to grade."""
    option = session.config.getoption("--submission")
    if not option:
        raise pytest.UsageError("autograder: give the notebook to grade with --submission PATH.ipynb")
    if not Path(option).is_file():
        raise pytest.UsageError(f"autograder: --submission {option} is not a file; pass the submitted .ipynb")


@pytest.fixture(scope="session")
def graded(request: pytest.FixtureRequest):
    """The SubmissionResult of --submission."""
    path = Path(request.config.getoption("--submission"))
    from backprop_ninja.grade.engine import grade_notebook  # imports torch: only when a test runs

    limits = {name: value for name, value in (("unit_timeout", request.config.getoption("--unit-timeout")),
                                              ("total_timeout", request.config.getoption("--total-timeout")))
              if value is not None}
    return grade_notebook(path, **limits)
