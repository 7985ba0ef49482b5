"""A notebook cell's code as the grader runs it: plain Python, with IPython's magics taken out line for line.

Needs only `re`, so `backprop-ninja assign` inlines it into the notebook (notebook_diagnoses.py): the notebook's
check() reads a cell exactly as the grader does.
"""
from __future__ import annotations

import re

# `%time x = ...` times the statement *and runs it*, so the statement must survive; `-n 10` style options go.
_STATEMENT_MAGIC = re.compile(r"^(\s*)%(?:time|timeit|prun)(?:\s+-\w+(?:\s+\d+)?)*\s+(.*)$")


def strip_magics(source: str) -> str:
    """Make a cell plain Python: `%time stmt` becomes `stmt`, other magics and shell escapes (`%matplotlib`,
    `!ls`) become blank lines, or `pass` where indented (a block must keep a statement). Lines are replaced, never
    removed, so line numbers in messages still match the cell."""
    lines = []
    for line in source.splitlines():
        timed = _STATEMENT_MAGIC.match(line)
        if timed:
            lines.append(timed.group(1) + timed.group(2))
        elif line.lstrip().startswith(("%", "!")):
            indent = line[:len(line) - len(line.lstrip())]
            lines.append(indent + "pass" if indent else "")
        else:
            lines.append(line)
    return "\n".join(lines)
