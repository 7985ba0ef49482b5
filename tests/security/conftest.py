"""The security suite: one real notebook per attack, graded through the front end it targets.

These tests prove the isolation layer, so they need it: every module is marked `isolation` (see tests/conftest.py:
where bubblewrap is missing they are not run, loudly, except in CI, where they must run).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

KEEP_VAR = "BACKPROP_NINJA_KEEP_SECURITY_RUNS"  # set it to look at the runs' folders after a failure


@pytest.fixture(scope="module")
def workdir():
    """A folder of the module's own (pytest prunes its basetemp when other sessions start, which can be mid-run)."""
    path = Path(tempfile.mkdtemp(prefix="backprop-ninja-security-"))
    yield path
    if os.environ.get(KEEP_VAR):
        print(f"\nkept {path}")
    else:
        shutil.rmtree(path, ignore_errors=True)
