"""Grade a whole class: `backprop-ninja grade FOLDER|ZIP --jobs N --out DIR`.

The main process stays light (no torch): it finds the submissions, skips those already graded by
this grader version, hands the rest to N warm worker processes, and is the only one that writes
results. Each worker imports the engine (and torch) once, loads the data once, then grades
submission after submission. See docs/batch.md for the modules, the layout rules, the input limits,
the resume key and the exit codes.
"""
from __future__ import annotations

import importlib
import importlib.util

# name -> the module that defines it. Loaded on first use (PEP 562), so that grading one notebook, which only needs
# arguments.py, does not import the whole batch (and traitlets with it) before its sandbox starts.
_HOME = {
    "add_batch_arguments": "arguments", "is_batch_input": "arguments",
    "run_from_args": "cli",
    "ENVIRONMENT_FAULT": "faults", "fault_gradescope": "faults", "fault_result": "faults",
    "is_environment_fault": "faults",
    "safe_student_id": "ids",
    "ASSIGNMENT": "inputs", "discover": "inputs",
    "DEFAULT_WATCHDOG_SECONDS": "pool",
    "CSV_NAME": "records", "RECORD_KEY": "records", "RESULTS_NAME": "records", "make_record": "records",
    "read_record": "records", "write_grades_csv": "records", "write_json_atomically": "records",
    "GRADING_CODE": "resume", "PACKAGE_DIR": "resume", "content_sha256": "resume", "grader_version": "resume",
    "resume_key": "resume",
    "DEFAULT_GRADER": "run", "EXIT_ALL_GRADED": "run", "EXIT_BATCH_FAILED": "run", "EXIT_SOME_NOT_GRADED": "run",
    "STATE_DIR": "run", "BatchSummary": "run", "run_batch": "run",
    "BatchError": "submission", "Submission": "submission",
}
__all__ = sorted(_HOME)


def __getattr__(name: str):
    if name in _HOME:
        value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    elif not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")  # a module of the batch: batch.run, batch.resume
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
