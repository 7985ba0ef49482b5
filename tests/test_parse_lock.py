"""The grader never runs ast.parse in two threads at once.

CPython 3.11's parser can fail with "SystemError: AST constructor recursion depth mismatch" when two threads parse
at the same moment (python/cpython#106905), and a cold grading parses in two threads: the canary's (the reference
answers) and the grading's own. It happened in this suite. grade/syntax.py's PARSING lock is held around every parse
of the grader, including those of the modules inlined into the notebook (autograd_scan, cell_text, one_go), which
have no lock of their own.
"""
from __future__ import annotations

import ast
import threading
import time

from backprop_ninja.grade import engine, isolation
from fixtures.correct_cells import CORRECT_CELLS
from notebooks import write_submission


def test_a_cold_grading_never_parses_in_two_threads_at_once(tmp_path, names_file, monkeypatch):
    real_parse = ast.parse
    count = threading.Lock()
    inside, overlaps, threads = [0], [], set()

    def parse(*args, **kwargs):  # each parse is made slow, so that two threads would meet inside it
        with count:
            inside[0] += 1
            if inside[0] > 1:
                overlaps.append(threading.current_thread().name)
        threads.add(threading.current_thread().name)
        try:
            time.sleep(0.002)
            return real_parse(*args, **kwargs)
        finally:
            with count:
                inside[0] -= 1

    monkeypatch.setattr(ast, "parse", parse)
    notebook = write_submission(tmp_path / "submission.ipynb", CORRECT_CELLS)
    with isolation.start(isolation.PREFERRED) as launcher:  # a launcher of its own: the canary has not run on it
        result = engine.grade_notebook(notebook, launcher=launcher, unit_timeout=10.0, total_timeout=120.0)
    assert all(v.status == "ok" for v in result.verdicts)
    assert len(threads) == 2, threads  # the canary's thread and this one both parsed
    assert overlaps == []
