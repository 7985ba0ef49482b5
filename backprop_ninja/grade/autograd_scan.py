"""The static scan's core: does a cell (plain Python) ask autograd, or a library function, for the gradient?

Needs only `ast`, with what it refuses passed in as `Rules` (static.py builds them from the units table), so
`backprop-ninja assign` inlines this file into the notebook (notebook_diagnoses.py) and check() names an
autograd construct with the grader's own code, line and words.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass


@dataclass
class Finding:
    kind: str      # "autograd", or "syntax" when the cell cannot be read as Python at all
    message: str   # names the construct and its line


@dataclass(frozen=True)
class Rules:
    """What one answer cell may not use."""
    answer: str                    # the name the cell must define, for the messages ("dlogits")
    forbidden: tuple[str, ...]     # functions that would do this exercise's work ("cross_entropy")
    attributes: tuple[str, ...]    # autograd's attributes and keywords ("grad", "requires_grad")
    modules: tuple[str, ...]       # autograd's modules ("torch.autograd")


_AUTOGRAD_HINT = "autograd's answer does not count here; derive the gradient by hand"
_ENGINE_HINT = "the C++ engine's internals (autograd's among them) are off limits in an answer cell"
_PARAMETER_HINT = "a Parameter is a tensor that requires grad, so autograd could compute the gradient; derive it by hand"
_NUMERICAL_HINT = "the notebook's `finite_difference` checks a gradient numerically; an answer must be derived by hand"
_ENGINE_MODULE = "torch._C"
# Tensors that require grad from birth (torch.nn.UninitializedParameter is one too).
_PARAMETER_CLASSES = ("torch.nn.Parameter", "torch.nn.parameter.Parameter",
                      "torch.nn.UninitializedParameter", "torch.nn.parameter.UninitializedParameter")
_NUMERICAL_HELPER = "finite_difference"
_IMPORT_FUNCTIONS = ("importlib.import_module", "__import__", "builtins.__import__")


def scan(source: str, rules: Rules, aliases: dict[str, str] | None = None, walked: tuple | None = None
         ) -> Finding | None:
    """The first forbidden construct in `source` (plain Python: magics already stripped), or why it does not parse;
    None if the cell is clean. `aliases`: import aliases bound before this source runs, as import_aliases gives.
    `walked`: the source's nodes in ast.walk's order, if the caller has them (the grader parses each cell once)."""
    if walked is None:
        tree = parse(source)
        if isinstance(tree, Finding):
            return tree
        walked = tuple(ast.walk(tree))
    aliases = {**(aliases or {}), **import_aliases(walked)}
    # ast.walk is breadth-first; sort so that "the first" construct is the first in the cell.
    nodes = sorted((n for n in walked if hasattr(n, "lineno")), key=lambda n: (n.lineno, n.col_offset))
    for node in nodes:
        problem = _forbidden(node, rules, aliases)
        if problem:
            what, why = problem
            return Finding("autograd", f"line {node.lineno} {what}: {why}")
    return None


def parse(source: str) -> ast.Module | Finding:
    """The cell's syntax tree, or a syntax Finding saying why Python cannot read it (never an exception)."""
    try:
        return ast.parse(source)
    except SyntaxError as error:
        where = f"line {error.lineno}" if error.lineno else "the cell"
        if error.msg == "too many nested parentheses":
            return Finding("syntax", f"{where} does not parse: more than 200 nested parentheses or brackets; "
                                     f"split the expression into smaller steps")
        return Finding("syntax", f"{where} does not parse: {error.msg or 'invalid syntax'}")
    except (RecursionError, MemoryError):  # the parser's own depth limits
        return Finding("syntax", "the cell is nested too deeply for Python to read (thousands of nested operators "
                                 "or calls): simplify the expression, one step per line")
    except UnicodeEncodeError as error:
        line = source.count("\n", 0, error.start) + 1
        return Finding("syntax", f"line {line} does not parse: it holds {source[error.start]!r}, which is not "
                                 f"text (an unpaired surrogate); delete that character")
    except ValueError as error:
        return Finding("syntax", f"the cell does not parse: {error}")


def import_aliases(tree) -> dict[str, str]:
    """Local name -> module path, so `import torch as t; t.autograd` reads as torch.autograd. `tree`: a syntax tree,
    or its nodes already walked."""
    aliases = {}
    for node in (ast.walk(tree) if isinstance(tree, ast.AST) else tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def _forbidden(node: ast.AST, rules: Rules, aliases: dict[str, str]) -> tuple[str, str] | None:
    if isinstance(node, ast.Attribute):
        dotted = _dotted(node, aliases)
        if dotted:
            problem = _forbidden_module(dotted, rules) or _parameter_class(dotted)
            if problem:
                return f"uses `{problem[0]}`", problem[1]
        if node.attr in rules.attributes:
            return f"reads `.{node.attr}`", _AUTOGRAD_HINT
        if node.attr == "_C":  # torch._C reached through some other name
            return "reads `._C`", _ENGINE_HINT
        if node.attr in rules.forbidden:
            return f"calls `{dotted or node.attr}`", _library_hint(rules)
    elif isinstance(node, ast.keyword) and node.arg in rules.attributes:
        return f"passes `{node.arg}=`", _AUTOGRAD_HINT
    elif isinstance(node, ast.Name):
        if node.id in rules.forbidden:
            return f"uses `{node.id}`", _library_hint(rules)
        if node.id == _NUMERICAL_HELPER and isinstance(node.ctx, ast.Load):
            return f"uses `{_NUMERICAL_HELPER}`", _NUMERICAL_HINT
        target = aliases.get(node.id, "")
        problem = _forbidden_module(target, rules) or _parameter_class(target)
        if problem:
            return f"uses `{problem[0]}`", problem[1]
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        return _forbidden_import(node, rules)
    elif isinstance(node, ast.Call):
        if _is_getattr(node.func) and len(node.args) >= 2:
            return _forbidden_getattr(node.args[1], rules)
        function = _dotted(node.func, aliases)
        if function in _IMPORT_FUNCTIONS:
            return _forbidden_import_call(node, function, rules)
    return None


def _forbidden_module(name: str, rules: Rules) -> tuple[str, str] | None:
    """(module, why) if the dotted `name` is, or is inside, a module an answer may not use."""
    for module in (*rules.modules, _ENGINE_MODULE):
        if name == module or name.startswith(module + "."):
            return module, _ENGINE_HINT if module == _ENGINE_MODULE else _AUTOGRAD_HINT
    return None


def _parameter_class(name: str) -> tuple[str, str] | None:
    if name.startswith("nn."):  # the usual `from torch import nn`, whether or not the cell imports it
        name = "torch." + name
    return (name, _PARAMETER_HINT) if name in _PARAMETER_CLASSES else None


def _forbidden_getattr(attribute: ast.expr, rules: Rules) -> tuple[str, str] | None:
    if not (isinstance(attribute, ast.Constant) and isinstance(attribute.value, str)):
        return None
    name = attribute.value
    if name in rules.attributes:
        return f"reads `.{name}` through getattr", _AUTOGRAD_HINT
    if name == "_C":
        return "reads `._C` through getattr", _ENGINE_HINT
    if name in ("Parameter", "UninitializedParameter"):
        return f"reads `{name}` through getattr", _PARAMETER_HINT
    if name in rules.forbidden:
        return f"reaches `{name}` through getattr", _library_hint(rules)
    return None


def _forbidden_import_call(call: ast.Call, function: str, rules: Rules) -> tuple[str, str] | None:
    """`importlib.import_module("torch.autograd")`, `__import__("torch", fromlist=["func"])` and the like,
    when the names are string constants (a name built at run time is left to the run-time guard)."""
    name = _string_argument(call, 0, "name")
    if name is None:
        return None
    package = _string_argument(call, 1, "package") if function == "importlib.import_module" else None
    if name.startswith(".") and package:  # import_module(".autograd", "torch")
        name = package + name
    candidates = [name]
    fromlist = _argument(call, 3, "fromlist") if function != "importlib.import_module" else None
    if isinstance(fromlist, (ast.List, ast.Tuple, ast.Set)):
        candidates += [f"{name}.{item.value}" for item in fromlist.elts
                       if isinstance(item, ast.Constant) and isinstance(item.value, str)]
    for candidate in candidates:
        problem = _forbidden_module(candidate, rules)
        if problem:
            return f"imports `{problem[0]}` through {function}", problem[1]
    return None


def _argument(call: ast.Call, position: int, keyword: str) -> ast.expr | None:
    if len(call.args) > position:
        return call.args[position]
    return next((k.value for k in call.keywords if k.arg == keyword), None)


def _string_argument(call: ast.Call, position: int, keyword: str) -> str | None:
    value = _argument(call, position, keyword)
    return value.value if isinstance(value, ast.Constant) and isinstance(value.value, str) else None


def _forbidden_import(node: ast.Import | ast.ImportFrom, rules: Rules) -> tuple[str, str] | None:
    if isinstance(node, ast.Import):
        imported = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        imported = [f"{base}.{alias.name}" if base else alias.name for alias in node.names]
        imported.append(base)
    for name in imported:
        problem = _forbidden_module(name, rules)
        if problem:
            return f"imports `{problem[0]}`", problem[1]
        if _parameter_class(name):
            return f"imports `{name}`", _PARAMETER_HINT
        if name.rsplit(".", 1)[-1] in rules.forbidden:
            return f"imports `{name}`", _library_hint(rules)
    return None


def _library_hint(rules: Rules) -> str:
    return (f"this exercise asks you to derive {rules.answer} yourself, not to call a function that does that "
            f"layer's work")


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
