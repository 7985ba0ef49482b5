"""Putting the kit's own modules into the notebook as code (not strings), for `backprop-ninja assign`: the notebook's
check, diagnosis and tutor then run the grader's code as it is."""
from __future__ import annotations

import ast
from pathlib import Path


def module_body(module) -> str:
    """A module's source without its docstring and its `from __future__` line (a cell cannot start with one)."""
    source = Path(module.__file__).read_text(encoding="utf-8")
    tree = ast.parse(source)
    first = tree.body[0]
    skip_to = first.end_lineno if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) else 0
    lines = source.splitlines()[skip_to:]
    kept = [line for line in lines if line.strip() != "from __future__ import annotations"]
    return "\n".join(kept).strip("\n") + "\n"


def as_namespace(name: str, comment: str, body: str) -> str:
    """`body` as the body of a function whose locals become the notebook's namespace `name` (`_model`, `_probe`,
    ...), under `comment`: the grader's names stay out of the notebook's."""
    indented = "".join(f"    {line}\n" if line.strip() else "\n" for line in body.splitlines())
    return (f"\n{comment}def _ninja{name}():\n{indented}\n    return _types.SimpleNamespace(**locals())\n\n\n"
            f"import types as _types\n\n{name} = _ninja{name}()\n")
