"""`backprop-ninja grade FOLDER|ZIP --out DIR [--jobs N]`: the batch's entry, called from grade/cli.py (its arguments
are in arguments.py)."""
from __future__ import annotations

import sys
from pathlib import Path

from backprop_ninja.batch import run
from backprop_ninja.batch.pool import DEFAULT_WATCHDOG_SECONDS
from backprop_ninja.batch.submission import BatchError
from backprop_ninja.export.safe_text import terminal_text
from backprop_ninja.lateness.options import late_book


def run_from_args(args) -> int:
    """`backprop-ninja grade FOLDER|ZIP --out DIR [--jobs N]`, dispatched from grade/cli.py."""
    source = Path(getattr(args, "notebook", None) or args.path)
    if not getattr(args, "out", None):
        print(f"grade: {terminal_text(source)} holds a whole class; say where the results go with --out DIR.",
              file=sys.stderr)
        return run.EXIT_BATCH_FAILED
    limits = {name: getattr(args, name) for name in ("unit_timeout", "total_timeout")
              if getattr(args, name, None) is not None}
    # A class's code is strangers' code: isolated, or the batch stops with the fix (the workers check).
    limits["isolation"] = "off" if getattr(args, "no_isolation", False) else "required"
    # Part of the resume key like the limits: switching the rule policy regrades (right by luck changes points).
    limits["strict_rules"] = bool(getattr(args, "strict_rules", False))
    limits["shape"] = getattr(args, "shape", None) or "strict"  # the shape policy too
    limits["code"] = getattr(args, "code", None) or "allowlist"  # and the code policy
    watchdog = max(DEFAULT_WATCHDOG_SECONDS, 2 * limits.get("total_timeout", 0))
    try:
        lateness = late_book(args)  # before grading: a bad due date or times file stops the batch at once
        summary = run.run_batch(source, Path(args.out), getattr(args, "jobs", None), limits=limits,
                                watchdog_seconds=watchdog, id_pattern=getattr(args, "id_pattern", None),
                                retry_failed=getattr(args, "retry_failed", False),
                                shard=getattr(args, "shard", None), lateness=lateness)
    except BatchError as error:
        print(f"grade: {terminal_text(error)}", file=sys.stderr)  # names files of the class
        return run.EXIT_BATCH_FAILED
    except KeyboardInterrupt:
        print("grade: interrupted; run the same command again to resume.", file=sys.stderr)
        return 130
    print(terminal_text(summary.line()))
    return summary.exit_code
