"""Fixtures shared by the kit's tests."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from backprop_ninja.assign import REPO, notebook_path, solution_cells
from backprop_ninja.data import names_path
from backprop_ninja.grade import isolation

# Tests marked `isolation` prove the sandbox, so they need bubblewrap. Where it is missing they are not run
# (and the summary says so, loudly), and the other tests grade unisolated, so `make test` still works on a
# fresh machine. CI sets BACKPROP_NINJA_CI=1: there a missing sandbox fails those tests instead.
ISOLATION_MISSING = None if os.environ.get("BACKPROP_NINJA_CI") == "1" else isolation.unavailable_reason()
if ISOLATION_MISSING:
    os.environ[isolation.NO_ISOLATION_ENV] = "1"


def pytest_collection_modifyitems(config, items):
    if not ISOLATION_MISSING:
        return
    needing = [item for item in items if item.get_closest_marker("isolation")]
    if needing:
        config.hook.pytest_deselected(items=needing)
        items[:] = [item for item in items if not item.get_closest_marker("isolation")]
        config._isolation_not_run = len(needing)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    missing = getattr(config, "_isolation_not_run", 0)
    if missing:
        terminalreporter.write_sep("!", f"{missing} isolation tests NOT RUN: {ISOLATION_MISSING}; {isolation.FIX}",
                                   red=True)


@pytest.fixture(scope="session")
def names_file() -> Path:
    """The verified names.txt; tests that need the real data fail (not skip) with a clear message without it."""
    try:
        return names_path()
    except FileNotFoundError as error:
        problem = str(error)
    # Outside the except block, so the report is this one message rather than a chained traceback.
    pytest.fail(f"The data is not set up, so this test cannot run. {problem}", pytrace=False)


@pytest.fixture(scope="session")
def release() -> nbformat.NotebookNode:
    """The committed student release, to fill with answers."""
    return nbformat.read(notebook_path(REPO, "release"), as_version=4)


@pytest.fixture(scope="session")
def solutions() -> dict[str, str]:
    """grade_id -> the reference answer cell of the solution source."""
    return solution_cells()
