"""Definitions from the cells a student added, replayed before the answer cells that follow them.

Students put helpers in cells of their own (a `def`, an import alias, a constant) and use them in an answer.
The grader replays only answer cells, so such a helper would be a NameError. Here we pick, with `ast` and in
the trusted grader (nothing here runs student code), the statements of those cells that only *define*
something, and give each to the first answer cell that follows it; the sandboxed worker runs them before that
cell, under its limits and time budget.

The rule, per top-level statement of an added cell (a cell with no nbgrader grade_id):
- replayed: `def`, `async def`, `class`, `import`, `from ... import`, and `name = value` / `name: T = value`
  whose targets are plain names and whose value calls nothing when it is evaluated (a call inside a lambda's
  body is fine: it only runs when the lambda does). So `eps = 1e-3`, `V = vocab_size`, `sm = lambda x: ...`
  are replayed; `losses = train()`, `max_steps = int(2e5)` are not.
- never replayed: everything else (loops, `with`, `if`, bare calls such as `print(...)` or `train()`,
  augmented assignments, subscript or attribute targets), and any statement that binds a name the grader
  reads as an answer (a gradient d<var>, manual_backward): an added cell cannot answer a unit.

Autograd stays off limits: each definition goes through static.scan like an answer cell. One that the scan
flags is never replayed, and an answer that uses it (directly or through another definition) gets the
verdict uses_autograd, as if the definition were written in the answer. The one exception is the lecture's
habit `cmp("logprobs", dlogprobs, logprobs)`: a flagged function called only as a statement of its own, its
result unused, is replaced by a stand-in that does nothing, since its result cannot reach the answer; unless it can
bind the answer's name as a global (`global db2` in it, or `globals()`), which makes it the answer.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from backprop_ninja import units
from backprop_ninja.grade import allowlist, cell_text, static, syntax

# Names the worker reads as a unit's answer: no added cell may bind them.
ANSWER_NAMES = frozenset({"d" + u.var for u in units.EXERCISE_1} | set(units.EX4_RETURNS)
                         | {u.answer for u in units.UNITS})
_DEFINING = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)
# A unit whose scan checks autograd only (no library names): decides whether a definition is replayed at all.
_AUTOGRAD_ONLY = next(u for u in units.UNITS if not u.forbidden)
_LINE = re.compile(r"^line \d+ ")  # a finding's "line N " prefix: a definition's lines are not the answer's


@dataclass(frozen=True)
class Definition:
    source: str            # the statement alone, as Python source (ast.unparse: decorators included)
    binds: frozenset[str]  # the names it defines
    reads: frozenset[str]  # the names it reads (to follow a helper that calls another)
    position: int          # index of its cell in the notebook
    kind: str              # "function", "class", "import" or "constant"
    problem: str | None    # what the static scan found in it: such a definition is never replayed
    problem_kind: str = "autograd"  # "autograd" (static.scan) or "not_allowed" (allowlist.check)

    @property
    def flagged(self) -> bool:
        return self.problem is not None


def from_added_cells(cells: list[tuple[int, str]],
                     context: allowlist.Context | None = None) -> list[Definition]:
    """The replayable definitions of the added cells (notebook position, source), in notebook order. With a
    `context` (the allowlist code policy), a definition outside the allowlist is flagged too, and never replayed."""
    chosen = _definition_statements(cells)
    aliases = _aliases([d for d in chosen if d.kind == "import"])
    flagged = []
    for definition in chosen:
        problem = _problem(definition, _AUTOGRAD_ONLY, aliases)
        if problem is None and context is not None:
            refusal = allowlist.check(definition.source, context)
            if refusal is not None:
                flagged.append(_with_problem(definition, _LINE.sub("", refusal.message), "not_allowed"))
                continue
        flagged.append(_with_problem(definition, problem))
    return flagged


def _definition_statements(cells: list[tuple[int, str]]) -> list[Definition]:
    found = []
    for position, source in cells:
        try:
            tree = syntax.tree(static.strip_magics(source))  # the grading's shared parse (read only)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue  # the notebook could not have run this cell either
        for statement in tree.body:
            binds = _bound_names(statement)
            if binds is None or binds & ANSWER_NAMES:
                continue
            try:
                text = ast.unparse(statement)
            except (RecursionError, ValueError):
                continue
            found.append(Definition(text, binds, _read_names(statement), position, _kind(statement), None))
    return found


def _with_problem(definition: Definition, problem: str | None, kind: str = "autograd") -> Definition:
    return Definition(definition.source, definition.binds, definition.reads, definition.position, definition.kind,
                      problem, kind)


def _problem(definition: Definition, unit: units.Unit, aliases: dict[str, str]) -> str | None:
    """What static.scan finds in the definition for `unit` ("reads `.grad`: ..."), without its line number."""
    finding = static.scan(definition.source, unit, aliases=aliases)
    return None if finding is None else _LINE.sub("", finding.message)


def _bound_names(statement: ast.stmt) -> frozenset[str] | None:
    """The names a replayable statement binds; None if the statement is not replayed."""
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return frozenset({statement.name})
    if isinstance(statement, (ast.Import, ast.ImportFrom)):
        if any(alias.name == "*" for alias in statement.names):
            return None  # binds names we cannot know
        return frozenset(alias.asname or alias.name.split(".")[0] for alias in statement.names)
    if isinstance(statement, ast.Assign):
        targets, value = statement.targets, statement.value
    elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
        targets, value = [statement.target], statement.value
    else:
        return None
    names = [_plain_names(target) for target in targets]
    if any(n is None for n in names) or _runs_code(value):
        return None
    return frozenset(name for group in names for name in group)


def _kind(statement: ast.stmt) -> str:
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return "function"
    if isinstance(statement, ast.ClassDef):
        return "class"
    return "import" if isinstance(statement, (ast.Import, ast.ImportFrom)) else "constant"


def _plain_names(target: ast.expr) -> list[str] | None:
    """`a` or `a, (b, c)` -> the names; None for a subscript, attribute or starred target."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        names = [_plain_names(element) for element in target.elts]
        return None if any(n is None for n in names) else [name for group in names for name in group]
    return None


def _runs_code(value: ast.expr) -> bool:
    """Whether evaluating `value` calls anything (a training run is a call) or binds a name (`:=`).
    A lambda's body runs only when it is called, so only its defaults count."""
    pending = [value]
    while pending:
        node = pending.pop()
        if isinstance(node, (ast.Call, ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)):
            return True
        if isinstance(node, ast.Lambda):
            pending += [d for d in node.args.defaults + node.args.kw_defaults if d is not None]
            continue
        pending += ast.iter_child_nodes(node)
    return False


def _read_names(statement: ast.stmt) -> frozenset[str]:
    return frozenset(node.id for node in ast.walk(statement)
                     if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load))


def preludes(order: list[tuple[str, int]], definitions: list[Definition]) -> dict[str, list[str]]:
    """grade_id -> the definitions to run just before that answer cell. `order` is (grade_id, notebook position)
    of the answer cells to replay, in the order they are replayed. Each definition is given to the first of them
    that sits after it in the notebook (the namespace keeps it for the later ones); flagged ones to none."""
    given, out = set(), {}
    for grade_id, position in order:
        mine = [i for i, d in enumerate(definitions) if i not in given and d.position < position and not d.flagged]
        if mine:
            given.update(mine)
            out[grade_id] = [definitions[i].source for i in mine]
    return out


@dataclass(frozen=True)
class Use:
    """What an answer cell does with the definitions before it."""
    finding: static.Finding | None = None   # autograd reached through a definition: the unit's verdict
    silenced: tuple[str, ...] = ()          # flagged functions only called as a statement: run as stand-ins


def check_use(answer: str, unit: units.Unit, position: int, definitions: list[Definition]) -> Use:
    """Scan what `answer` uses of the definitions before it, as static.scan scans the answer itself."""
    before = [d for d in definitions if d.position < position]
    if not before:
        return Use()
    aliases = _aliases(before)
    if aliases:  # `import torch as T` in an added cell, `T.func.vjp` in the answer
        finding = static.scan(answer, unit, aliases=aliases)
        if finding is not None:
            return Use(finding)
    try:
        tree = syntax.tree(static.strip_magics(answer))  # parsed already by the answer's scan
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return Use()  # the answer's own scan reports it
    silenced, own, problems = [], _bound_in(tree), {}
    for name, line in _first_reads(tree).items():
        if name in own:
            continue  # the answer cell defines it itself (a flagged definition is never replayed anyway)
        problem = _problem_behind(name, before, unit, aliases, problems)
        if problem is None:
            continue
        culprit, what, kind = problem
        if (cell_text.only_called_as_statement(tree, name) and _is_function(name, before)
                and not _sets_answer(name, before, unit.answer)):
            silenced.append(name)
            continue
        through = "" if culprit == name else f"uses `{culprit}`, which "
        return Use(static.Finding(kind, f"line {line} uses `{name}`, defined in a cell you added, which "
                                        f"{through}{what}"))
    return Use(silenced=tuple(silenced))


def stand_in(name: str) -> str:
    """Source of a function that does nothing: it replaces a flagged helper whose result the answer ignores."""
    return f"def {name}(*args, **kwargs):\n    return None\n"


def _aliases(definitions: list[Definition]) -> dict[str, str]:
    imports = [d.source for d in definitions if d.kind == "import"]
    return static._import_aliases(syntax.parse("\n".join(imports))) if imports else {}


def _first_reads(tree: ast.AST) -> dict[str, int]:
    """Each name the cell reads, with the first line that reads it."""
    reads = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            reads[node.id] = min(reads.get(node.id, node.lineno), node.lineno)
    return dict(sorted(reads.items(), key=lambda item: item[1]))


def _bound_in(tree: ast.AST) -> set[str]:
    """Names the cell binds anywhere: assignment targets, defs, classes, imports."""
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update(alias.asname or alias.name.split(".")[0] for alias in node.names)
    return bound


def _problem_behind(name: str, before: list[Definition], unit: units.Unit, aliases: dict[str, str],
                    problems: dict[int, tuple[str | None, str]]) -> tuple[str, str, str] | None:
    """(the definition's name, what it does, the finding's kind) for the first definition reached from `name`,
    following the names each definition reads, that the scan flags for this unit; None if all are clean.
    `problems` memoizes the scan per definition (by index in `before`) for this unit."""
    seen, pending = set(), [name]
    while pending:
        current = pending.pop(0)
        if current in seen:
            continue
        seen.add(current)
        for index, definition in enumerate(before):
            if current not in definition.binds:
                continue
            if index not in problems:
                # A unit with no forbidden library calls is scanned for autograd only, as the definition already was.
                found = _problem(definition, unit, aliases) if unit.forbidden else None
                problems[index] = ((found, "autograd") if found is not None
                                   else (definition.problem, definition.problem_kind))
            if problems[index][0] is not None:
                return current, problems[index][0], problems[index][1]
            pending += sorted(definition.reads - seen)
    return None


def _sets_answer(name: str, before: list[Definition], answer: str) -> bool:
    """Whether the last definition of `name` before the answer can bind the answer's name as a global."""
    last = next((d for d in reversed(before) if name in d.binds), None)
    if last is None:
        return False
    with syntax.PARSING:  # may_set_global parses (cell_text.py is inlined into the notebook: it has no lock)
        return cell_text.may_set_global(last.source, answer)


def _is_function(name: str, before: list[Definition]) -> bool:
    """Whether the last definition of `name` before the answer is a plain function."""
    last = next((d for d in reversed(before) if name in d.binds), None)
    return last is not None and last.kind == "function"
