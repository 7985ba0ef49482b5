"""Temporary folders of the tests' own: pytest prunes its basetemp when other sessions start, which can be mid-run
on a shared machine, and long runs (nbgrader courses, the security suite) must keep theirs until they end."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def own_folder(prefix: str, keep_var: str):
    """A fresh folder, removed afterwards unless the environment variable `keep_var` is set (then its path is
    printed, to look at after a failure)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if os.environ.get(keep_var):
            print(f"\nkept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)
