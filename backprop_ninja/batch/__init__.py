"""Grade a whole class: `backprop-ninja grade FOLDER|ZIP --jobs N --out DIR`.

The main process stays light (no torch): it finds the submissions, skips those already graded by
this grader version, hands the rest to N warm worker processes, and is the only one that writes
results. Each worker imports the engine (and torch) once, loads the data once, then grades
submission after submission. See docs/batch.md for the modules, the layout rules, the input limits,
the resume key and the exit codes.
"""
from backprop_ninja.batch.cli import add_batch_arguments, is_batch_input, run_from_args
from backprop_ninja.batch.faults import ENVIRONMENT_FAULT, fault_gradescope, fault_result, is_environment_fault
from backprop_ninja.batch.ids import safe_student_id
from backprop_ninja.batch.inputs import ASSIGNMENT, discover
from backprop_ninja.batch.pool import DEFAULT_WATCHDOG_SECONDS
from backprop_ninja.batch.records import (CSV_NAME, RECORD_KEY, RESULTS_NAME, make_record, read_record,
                                          write_grades_csv, write_json_atomically)
from backprop_ninja.batch.resume import GRADING_CODE, PACKAGE_DIR, content_sha256, grader_version, resume_key
from backprop_ninja.batch.run import (DEFAULT_GRADER, EXIT_ALL_GRADED, EXIT_BATCH_FAILED, EXIT_SOME_NOT_GRADED,
                                      STATE_DIR, BatchSummary, run_batch)
from backprop_ninja.batch.submission import BatchError, Submission

__all__ = [
    "ASSIGNMENT", "CSV_NAME", "ENVIRONMENT_FAULT", "DEFAULT_GRADER", "DEFAULT_WATCHDOG_SECONDS", "EXIT_ALL_GRADED", "EXIT_BATCH_FAILED",
    "EXIT_SOME_NOT_GRADED", "GRADING_CODE", "PACKAGE_DIR", "RECORD_KEY", "RESULTS_NAME", "STATE_DIR",
    "BatchError", "BatchSummary", "Submission", "add_batch_arguments", "content_sha256", "discover",
    "fault_gradescope", "fault_result", "grader_version", "is_batch_input", "is_environment_fault", "make_record", "read_record",
    "resume_key", "run_batch", "run_from_args", "safe_student_id", "write_grades_csv", "write_json_atomically",
]
