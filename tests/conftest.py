"""Fixtures shared by the kit's tests."""
from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from backprop_ninja.assign import REPO, notebook_path, solution_cells
from backprop_ninja.data import names_path


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
