"""`backprop-ninja grade NOTEBOOK [--out DIR] [--json]`: grade one notebook.

Prints a table (unit, status, points, message), or with --json Gradescope's results.json on stdout;
--out DIR also writes DIR/results.json. Exit status 0 when the notebook was graded (right or wrong),
2 when the file could not be graded at all, 4 when this machine cannot grade (isolation, environment).

One notebook is graded isolated where possible and otherwise unisolated, with a note (self-study: it
is your own code); a class (folder or zip) must be isolated unless --no-isolation is given.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from backprop_ninja.grade.verdict import (ALLOWLIST_CODE, CODE_POLICIES, SHAPE_POLICIES, STRICT_SHAPE,
                                          SubmissionResult)

EXIT_GRADED = 0
EXIT_NOT_GRADED = 2
EXIT_CANNOT_GRADE = 4


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebook", help="the submitted .ipynb file")
    parser.add_argument("--out", metavar="DIR",
                        help="also write DIR/results.json (Gradescope's format) and DIR/feedback.html")
    parser.add_argument("--json", action="store_true", help="print results.json to stdout instead of the table")
    add_time_limit_arguments(parser)
    parser.add_argument("--no-isolation", action="store_true",
                        help="run student code without the sandbox (bubblewrap); recorded in every result. "
                             "Only for trusted notebooks or machines where isolation cannot be set up")
    parser.add_argument("--strict-rules", action="store_true",
                        help="an Exercise 1 answer that is right by luck (the rule probe shows it skips its local "
                             "rule, and only matches because a gradient is exactly 0) earns no points; by default "
                             "it keeps them, with a note saying why the value matched. Recorded in every result")
    parser.add_argument("--shape", choices=SHAPE_POLICIES, default=STRICT_SHAPE,
                        help="'strict' (the default): a gradient must have its variable's shape. 'lenient': an "
                             "intermediate's gradient that is right in value and differs only by size-1 dimensions "
                             "((64,) for (1, 64), the lecture's dbnmeani) earns its points, with the shape message; "
                             "parameters must always match. Recorded in every result")
    parser.add_argument("--code", choices=CODE_POLICIES, default=ALLOWLIST_CODE,
                        help="'allowlist' (the default): an answer cell, or a definition from a cell the student added, may use only what a gradient needs (tensor arithmetic, indexing, listed torch/F/numpy/math functions, plain Python); anything else is not_allowed and never runs. 'any': any Python reaches the sandbox, where only the autograd scan and the run-time blocks apply. Recorded in every result")
    from backprop_ninja.batch import add_batch_arguments  # a folder or zip: --jobs, --id-pattern, --retry-failed

    add_batch_arguments(parser)


def add_time_limit_arguments(parser: argparse.ArgumentParser, total_note: str = "") -> None:
    """--unit-timeout and --total-timeout (the grade verb's, and the Gradescope bundle's)."""
    from backprop_ninja.grade import limits  # not the engine: a batch's main process never imports torch

    parser.add_argument("--unit-timeout", type=float, default=limits.UNIT_TIMEOUT, metavar="SECONDS",
                        help="time limit of one unit on all replays (default %(default)s)")
    parser.add_argument("--total-timeout", type=float, default=limits.TOTAL_TIMEOUT, metavar="SECONDS",
                        help=f"time limit of the whole submission (default %(default)s){total_note}")


def fast_exit_ok(args: argparse.Namespace) -> bool:
    """One notebook: run() leaves nothing open, so cli.console_main may skip the interpreter's teardown."""
    from backprop_ninja import batch

    return not batch.is_batch_input(args.notebook)


def grade_one(path: str | Path, out_dir: str | Path | None = None, **limits) -> SubmissionResult:
    """Grade one notebook; with out_dir, write out_dir/results.json and out_dir/feedback.html.
    `limits` (and `launcher`) go to grade_notebook."""
    from backprop_ninja.export.feedback import write_feedback
    from backprop_ninja.export.gradescope import write_results
    from backprop_ninja.grade.engine import grade_notebook

    result = grade_notebook(path, **limits)
    if out_dir is not None:
        write_results(result, out_dir)
        write_feedback(result, out_dir)
    return result


def run(args: argparse.Namespace) -> int:
    from backprop_ninja import batch

    if batch.is_batch_input(args.notebook):  # a folder, an nbgrader tree or a zip: the whole class
        return batch.run_from_args(args)
    if getattr(args, "shard", None):
        print(f"backprop-ninja grade: --shard splits a class (a folder or a zip); {args.notebook} is one notebook.",
              file=sys.stderr)
        return EXIT_NOT_GRADED
    from backprop_ninja.grade import isolation

    # Started before the engine (and torch) is imported here: the sandbox imports torch at the same time.
    launcher = isolation.start(isolation.OFF if args.no_isolation else isolation.PREFERRED)
    try:
        from backprop_ninja.export.gradescope import to_gradescope
        from backprop_ninja.export.table import format_table
        from backprop_ninja.grade.engine import EnvironmentProblem
    except (MemoryError, SystemError, ImportError) as error:  # e.g. `ulimit -v` below what torch needs to load
        launcher.close()
        print(f"backprop-ninja grade: this machine cannot grade: loading the grader (torch) failed with "
              f"{type(error).__name__}: {str(error)[:200]}. Check the memory limit (ulimit -v) and the install; "
              f"no notebook was graded.", file=sys.stderr)
        return EXIT_CANNOT_GRADE

    try:
        with launcher:
            result = grade_one(args.notebook, args.out, unit_timeout=args.unit_timeout,
                               total_timeout=args.total_timeout, launcher=launcher,
                               strict_rules=args.strict_rules, shape=args.shape, code=args.code)
    except FileNotFoundError as error:  # names.txt is not set up: the grader's problem, not the notebook's
        print(f"backprop-ninja grade: {error}", file=sys.stderr)
        return EXIT_NOT_GRADED
    except (EnvironmentProblem, isolation.IsolationUnavailable) as error:
        print(f"backprop-ninja grade: {error}", file=sys.stderr)
        return EXIT_CANNOT_GRADE
    if args.json:
        print(json.dumps(to_gradescope(result), indent=2))
    else:
        print(format_table(result))
    return EXIT_NOT_GRADED if result.error else EXIT_GRADED
