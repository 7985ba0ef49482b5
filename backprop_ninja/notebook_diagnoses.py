"""The notebook's `diagnoses` cell: diagnose.py as it is, plus the units table's diagnostic rows as a literal.

`backprop-ninja assign` writes it into the cell whose grade_id is `diagnoses`, so the notebook's `check` names a
mistake with the grader's own code and data (one source, no copy by hand). It needs only numpy, which matplotlib
brings wherever the notebook runs.
"""
from __future__ import annotations

import ast
import pprint
from pathlib import Path

from backprop_ninja import diagnose, units

CELL = "diagnoses"  # the grade_id of the cell

_HEADER = """\
# Written by `backprop-ninja assign` from the kit's backprop_ninja/diagnose.py and its units table: the code the
# grader uses to name a likely mistake, so that check() names it the same way. No answers in here; reading it is
# optional.
"""


def module_body() -> str:
    """diagnose.py without its docstring and its `from __future__` line (a cell cannot start with one)."""
    source = Path(diagnose.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source)
    first = tree.body[0]
    skip_to = first.end_lineno if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) else 0
    lines = source.splitlines()[skip_to:]
    kept = [line for line in lines if line.strip() != "from __future__ import annotations"]
    return "\n".join(kept).strip("\n") + "\n"


def notebook_code() -> str:
    table = pprint.pformat(units.diagnostic_table(), width=116, sort_dicts=False)
    return (_HEADER + "\n" + module_body() + "\n\n# Per variable: the lines that use it, the paths of a one-go "
            "exercise, and what its messages may mention.\n_DIAGNOSTICS = " + table + "\n")
