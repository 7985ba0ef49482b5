"""`backprop-ninja VERB ...`: one sub-command per thing a user does.

Each verb lives in its own module with `add_arguments(parser)` and `run(args) -> int`; the module is
imported only when its verb is used, so `backprop-ninja setup-data` does not pay for torch.
"""
from __future__ import annotations

import argparse
import importlib

VERBS = {
    # verb: (module, one-line help)
    "setup-data": ("backprop_ninja.data", "fetch names.txt into data/ and verify its sha256"),
    "assign": ("backprop_ninja.assign", "build source .ipynb, student release and solutions from the text source"),
    "grade": ("backprop_ninja.grade.cli", "grade one notebook, a folder, a zip or an nbgrader submitted/ tree"),
    "report": ("backprop_ninja.report", "cohort report (CSV, heatmap, HTML) from graded results"),
    "merge": ("backprop_ninja.batch.merge", "grades.csv of a class graded in shards (grade --shard K/N)"),
    "bundle": ("backprop_ninja.bundle", "write a Gradescope autograder.zip"),
    "export": ("backprop_ninja.export.cli", "a graded folder as a Canvas gradebook import or a long-format CSV"),
    "demo": ("backprop_ninja.demo", "autograde the shipped example submissions with nbgrader and with the grader"),
}


def main(argv: list[str] | None = None) -> int:
    return _dispatch(argv)[0]


def _dispatch(argv: list[str] | None) -> tuple[int, object, argparse.Namespace]:
    """Run the verb; return (exit status, its module, its parsed arguments)."""
    parser = argparse.ArgumentParser(prog="backprop-ninja", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb, (module_name, help_text) in VERBS.items():
        sub = verbs.add_parser(verb, help=help_text, add_help=False)
        sub.set_defaults(module_name=module_name)
        # arguments are added lazily below, once we know which verb was asked for
    args, _ = parser.parse_known_args(argv)
    module = importlib.import_module(args.module_name)
    sub = argparse.ArgumentParser(prog=f"backprop-ninja {args.verb}", description=VERBS[args.verb][1])
    module.add_arguments(sub)
    verb_args = sub.parse_args(_strip_verb(argv, args.verb))
    return int(module.run(verb_args) or 0), module, verb_args


def console_main() -> None:
    """The `backprop-ninja` command and `python -m backprop_ninja`: run the verb, then exit.

    When the verb's module says the run left nothing to clean up (`fast_exit_ok(args)`: grading one notebook, whose
    results are written and whose sandbox is closed), the process ends with os._exit, skipping the interpreter's
    teardown, which with torch loaded takes about 0.4 s: a third of a cold grading. Not for a class: the
    multiprocessing pool's temporary folder is removed at exit."""
    import os
    import sys

    code, module, verb_args = _dispatch(None)
    if getattr(module, "fast_exit_ok", lambda args: False)(verb_args):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _strip_verb(argv: list[str] | None, verb: str) -> list[str]:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    argv.remove(verb)
    return argv
