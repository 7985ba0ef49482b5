"""Static scan of one answer cell: does it ask autograd (or a library function) for the gradient?

Parsed with `ast`, so comments, strings and names that merely contain "grad" are not flagged, and a
helper *defined* as `def manual_backward(...)` is fine. The run-time guard in the child process
catches what a scan cannot (e.g. names built at run time); this scan gives the clearer message.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from backprop_ninja import units


@dataclass
class Finding:
    kind: str      # "autograd" or "syntax"
    message: str   # names the construct and its line


_AUTOGRAD_HINT = "autograd's answer does not count here; derive the gradient by hand"


def scan(source: str, unit: units.Unit) -> Finding | None:
    """The first forbidden construct in `source` (or its syntax error), None if the cell is clean."""
    try:
        tree = ast.parse(strip_magics(source))
    except SyntaxError as error:
        detail = error.msg or "invalid syntax"
        return Finding("syntax", f"line {error.lineno} does not parse: {detail}")
    aliases = _import_aliases(tree)
    # ast.walk is breadth-first; sort so that "the first" construct is the first in the cell.
    nodes = sorted((n for n in ast.walk(tree) if hasattr(n, "lineno")), key=lambda n: (n.lineno, n.col_offset))
    for node in nodes:
        problem = _forbidden(node, unit, aliases)
        if problem:
            what, why = problem
            return Finding("autograd", f"line {node.lineno} {what}: {why}")
    return None


# `%time x = ...` times the statement *and runs it*, so the statement must survive; `-n 10` style options go.
_STATEMENT_MAGIC = re.compile(r"^(\s*)%(?:time|timeit|prun)(?:\s+-\w+(?:\s+\d+)?)*\s+(.*)$")


def strip_magics(source: str) -> str:
    """Make a cell plain Python: `%time stmt` becomes `stmt`, other magics and shell escapes (`%matplotlib`,
    `!ls`) become blank lines. Lines are blanked, not removed, so line numbers in messages still match the cell."""
    lines = []
    for line in source.splitlines():
        timed = _STATEMENT_MAGIC.match(line)
        if timed:
            lines.append(timed.group(1) + timed.group(2))
        else:
            lines.append("" if line.lstrip().startswith(("%", "!")) else line)
    return "\n".join(lines)


def _import_aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> module path, so `import torch as t; t.autograd` reads as torch.autograd."""
    aliases = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _forbidden(node: ast.AST, unit: units.Unit, aliases: dict[str, str]) -> tuple[str, str] | None:
    forbidden_names = set(unit.forbidden)
    if isinstance(node, ast.Attribute):
        dotted = _dotted(node, aliases)
        for module in units.AUTOGRAD_MODULES:
            if dotted == module or (dotted and dotted.startswith(module + ".")):
                return f"uses `{module}`", _AUTOGRAD_HINT
        if node.attr in units.AUTOGRAD_ATTRIBUTES:
            return f"reads `.{node.attr}`", _AUTOGRAD_HINT
        if node.attr in forbidden_names:
            return f"calls `{dotted or node.attr}`", _library_hint(unit)
    elif isinstance(node, ast.keyword) and node.arg in units.AUTOGRAD_ATTRIBUTES:
        return f"passes `{node.arg}=`", _AUTOGRAD_HINT
    elif isinstance(node, ast.Name):
        if node.id in forbidden_names:
            return f"uses `{node.id}`", _library_hint(unit)
        target = aliases.get(node.id, "")
        for module in units.AUTOGRAD_MODULES:
            if target == module or target.startswith(module + "."):
                return f"uses `{target}`", _AUTOGRAD_HINT
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        return _forbidden_import(node, unit)
    elif isinstance(node, ast.Call) and _is_getattr(node.func) and len(node.args) >= 2:
        name = node.args[1]
        if isinstance(name, ast.Constant) and isinstance(name.value, str):
            if name.value in units.AUTOGRAD_ATTRIBUTES:
                return f"reads `.{name.value}` through getattr", _AUTOGRAD_HINT
            if name.value in forbidden_names:
                return f"reaches `{name.value}` through getattr", _library_hint(unit)
    return None


def _forbidden_import(node: ast.Import | ast.ImportFrom, unit: units.Unit) -> tuple[str, str] | None:
    if isinstance(node, ast.Import):
        imported = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        imported = [f"{base}.{alias.name}" if base else alias.name for alias in node.names]
        imported.append(base)
    for name in imported:
        for module in units.AUTOGRAD_MODULES:
            if name == module or name.startswith(module + "."):
                return f"imports `{module}`", _AUTOGRAD_HINT
        if name.rsplit(".", 1)[-1] in unit.forbidden:
            return f"imports `{name}`", _library_hint(unit)
    return None


def _library_hint(unit: units.Unit) -> str:
    return f"this exercise asks you to derive {unit.answer} yourself, not to call a function that does that layer's work"


def _is_getattr(func: ast.expr) -> bool:
    return isinstance(func, ast.Name) and func.id in ("getattr", "hasattr")


def _dotted(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """`torch.autograd.grad` -> "torch.autograd.grad", with import aliases resolved; None if the chain
    does not start at a name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))
