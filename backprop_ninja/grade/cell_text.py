"""A notebook cell's code as the grader runs it: plain Python, with IPython's magics taken out line for line.

Needs only `re` and `ast`, so `backprop-ninja assign` inlines it into the notebook (notebook_diagnoses.py): the
notebook's check() reads a cell exactly as the grader does.
"""
from __future__ import annotations

import ast
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


def only_called_as_statement(tree: ast.Module, name: str) -> bool:
    """Whether every read of `name` in the cell is a top-level statement `name(...)` whose result is unused: the
    lecture's `cmp("logprobs", dlogprobs, logprobs)`. Such a helper, if it asks autograd, cannot reach the answer,
    so the grader (definitions.py) and check() run a stand-in that does nothing in its place."""
    calls = [s.value.func for s in tree.body
             if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call) and isinstance(s.value.func, ast.Name)
             and s.value.func.id == name]
    reads = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == name]
    return bool(calls) and len(calls) == len(reads)


def may_set_global(source: str, name: str) -> bool:
    """Whether a helper's source can bind the global `name` (`global db2`, or a call of `globals()`). Called as a
    statement of its own, such a helper still gives the answer (`def steal(): global db2; db2 = b2.grad`), so no
    stand-in may take its place: its autograd is the answer's."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    return any((isinstance(node, ast.Global) and name in node.names)
               or (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "globals")
               for node in ast.walk(tree))
