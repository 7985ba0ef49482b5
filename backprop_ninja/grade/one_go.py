"""The rule of a one-go exercise (Exercises 2 and 3): its cell reads only the inputs the exercise gives.

Exercise 2 is the cross-entropy's gradient from `logits`, `Yb` and `n` alone; pasting Exercise 1's chain (which
reads `probs`, `counts`, `dlogprobs`, ...) would pass every number and teach nothing. So the answer cell may not
read a tensor of the forward pass, or a gradient, that the exercise does not give; names the cell itself binds
before reading them (`probs = F.softmax(logits, 1)`) are the student's own and fine.

Decided from the cell's text (`ast` only), so the grader and the notebook's check (which has it inlined by
`backprop-ninja assign`) apply the same rule with the same words.
"""
from __future__ import annotations

import ast

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
           ast.GeneratorExp, ast.ClassDef)


def read_problem(source: str, exercise: str, gives: tuple[str, ...], refused: set[str]) -> str | None:
    """The first name in `source` (plain Python) that the exercise does not give (in `refused`, read before the
    cell binds it), as a sentence for the student; None if the cell keeps to the rule or does not parse (the
    grader's syntax check speaks for that)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    found = _first_read(tree.body, set(), refused)
    if found is None:
        return None
    line, _, name = found
    given = [f"`{g}`" for g in gives]
    given = ", ".join(given[:-1]) + " and " + given[-1] if len(given) > 1 else "".join(given)
    return (f"line {line} reads `{name}`, which {exercise} does not give: it asks for the gradient in one go, "
            f"from {given} only, not from Exercise 1's steps; compute what you need from those in this cell")


def _first_read(statements: list[ast.stmt], bound: set[str], refused: set[str]) -> tuple[int, int, str] | None:
    """(line, column, name) of the first refused name read before it is bound, walking the statements in order; `bound`
    grows with what they bind."""
    for statement in statements:
        found = _statement_read(statement, bound, refused)
        if found:
            return found
        bound |= _bound_by(statement)
    return None


def _statement_read(statement: ast.stmt, bound: set[str], refused: set[str]) -> tuple[int, int, str] | None:
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
        inner = bound | _bound_in_scope(statement) | {statement.name}
        return _first_read(statement.body, inner, refused) or _reads(statement.args, bound, refused)
    if isinstance(statement, ast.AugAssign) and isinstance(statement.target, ast.Name):
        name = statement.target  # `x += 1` reads x first
        if name.id in refused and name.id not in bound:
            return name.lineno, name.col_offset, name.id
    blocks = [getattr(statement, field) for field in ("body", "orelse", "finalbody") if hasattr(statement, field)]
    if not blocks:
        return _reads(statement, bound, refused)
    # a compound statement: its header first (loop target and `with ... as` bind), then its blocks in order
    header = [node for field, node in ast.iter_fields(statement) if field not in ("body", "orelse", "finalbody",
                                                                                   "handlers")]
    for part in header:
        for node in part if isinstance(part, list) else [part]:
            if isinstance(node, ast.AST):
                found = _reads(node, bound, refused)
                if found:
                    return found
    inner = bound | _targets_of(statement)
    for block in blocks + [h.body for h in getattr(statement, "handlers", [])]:
        found = _first_read(block, inner, refused)
        if found:
            return found
    return None


def _reads(node: ast.AST, bound: set[str], refused: set[str]) -> tuple[int, int, str] | None:
    """The first refused name `node` reads (in reading order), with lambdas and comprehensions binding their own."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
        return (node.lineno, node.col_offset, node.id) if node.id in refused and node.id not in bound else None
    if isinstance(node, _SCOPES):
        bound = bound | _bound_in_scope(node)
    hits = [hit for child in ast.iter_child_nodes(node) if (hit := _reads(child, bound, refused))]
    return min(hits) if hits else None


def _bound_in_scope(scope: ast.AST) -> set[str]:
    """The names a function, lambda or comprehension binds for itself: its parameters and its targets."""
    names = set()
    arguments = getattr(scope, "args", None)
    if isinstance(arguments, ast.arguments):
        every = arguments.posonlyargs + arguments.args + arguments.kwonlyargs
        every += [a for a in (arguments.vararg, arguments.kwarg) if a]
        names |= {a.arg for a in every}
    for node in ast.walk(scope):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def _bound_by(statement: ast.stmt) -> set[str]:
    """Every name a statement binds where the next statements see it."""
    names = set()
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {statement.name}
    for node in ast.walk(statement):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
    return names


def _targets_of(statement: ast.stmt) -> set[str]:
    """What a compound statement's header binds for its body: a loop's target, a `with`'s `as` names."""
    targets = [statement.target] if isinstance(statement, (ast.For, ast.AsyncFor)) else []
    targets += [item.optional_vars for item in getattr(statement, "items", []) if item.optional_vars is not None]
    return {node.id for target in targets for node in ast.walk(target) if isinstance(node, ast.Name)}
