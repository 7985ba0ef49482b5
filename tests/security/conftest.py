"""The security suite: one real notebook per attack, graded through the front end it targets.

These tests prove the isolation layer, so they need it: every module is marked `isolation` (see tests/conftest.py:
where bubblewrap is missing they are not run, loudly, except in CI, where they must run).
"""
from __future__ import annotations

import pytest
from folders import own_folder

KEEP_VAR = "BACKPROP_NINJA_KEEP_SECURITY_RUNS"  # set it to look at the runs' folders after a failure


@pytest.fixture(scope="module")
def workdir():
    with own_folder("backprop-ninja-security-", KEEP_VAR) as path:
        yield path
