"""Mutants of the reference solution: small, typical slips applied one at a time to one line of one
answer cell, and a trusted check of which mutants are numerically the same answer after all.

A mutant the grader lets through would mean a student with that slip gets the points. A mutant
that is numerically equivalent (flipping the sign of a gradient that is zero, say) is a right answer
and must not count against the grader; `equivalence` decides that in float64, against autograd.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Iterator

import torch

from backprop_ninja import model, units
from backprop_ninja.grade import engine, evidence
from backprop_ninja.sandboxed import worker as worker_side


@dataclass(frozen=True)
class Mutant:
    grade_id: str
    line: int            # 1-based line of the cell that was changed
    operator: str        # which slip
    before: str          # the line as written in the solution
    after: str           # the mutated line
    source: str          # the whole mutated cell

    def describe(self) -> str:
        return f"{self.grade_id} line {self.line} [{self.operator}]: {self.before.strip()}  ->  {self.after.strip()}"


# (operator, pattern, replacement): every match of the pattern in a line gives its own mutant.
# `/ n` never matches `/ (n - 1)`, and the lookahead keeps `n - 1` itself out of the n-slips.
TEXT_OPERATORS: tuple[tuple[str, str, str], ...] = (
    ("drop 1/n", r"\(1\.0 / n\) \* ", ""),
    ("drop 1/n", r" / n\b(?! -)", ""),
    ("drop 1/n", r"/= n\b", "/= 1"),
    ("n vs n-1", r"\(n - 1\)", "n"),
    ("n vs n-1", r"/ n\b(?! -)", "/ (n - 1)"),
    ("n vs n-1", r"/= n\b", "/= (n - 1)"),
    ("sum axis", r"sum\(0", "sum(1"),
    ("sum axis", r"sum\(1", "sum(0"),
    ("drop keepdim", r", keepdim=True", ""),
    ("drop .T", r"\.T\b", ""),
    ("+= to =", r"\+=", "="),
    ("drop .sum", r"\.sum\([^()]*\)", ""),
)


def _text_mutants(line: str) -> Iterator[tuple[str, str]]:
    for operator, pattern, replacement in TEXT_OPERATORS:
        for match in re.finditer(pattern, line):
            yield operator, line[:match.start()] + re.sub(pattern, replacement, match.group(0)) + line[match.end():]


def _sign_mutants(line: str) -> Iterator[tuple[str, str]]:
    """Negate what a one-line assignment stores; for `a, b = x, y` negate each of x and y in turn."""
    indent = line[: len(line) - len(line.lstrip())]
    try:
        tree = ast.parse(line.strip())
    except SyntaxError:
        return  # part of a statement that spans several lines: the text operators cover it
    if len(tree.body) != 1 or not isinstance(tree.body[0], (ast.Assign, ast.AugAssign)):
        return
    statement = tree.body[0]
    values = statement.value.elts if isinstance(statement.value, ast.Tuple) else [statement.value]
    for index in range(len(values)):
        mutated = ast.parse(line.strip()).body[0]
        target = mutated.value.elts if isinstance(mutated.value, ast.Tuple) else None
        negated = ast.UnaryOp(op=ast.USub(), operand=(target[index] if target else mutated.value))
        if target:
            target[index] = negated
        else:
            mutated.value = negated
        yield "flip sign", indent + ast.unparse(mutated)


def mutants_of(grade_id: str, cell: str) -> list[Mutant]:
    lines = cell.splitlines()
    found, seen = [], {cell}
    for number, line in enumerate(lines, start=1):
        if line.strip().startswith(("#", '"""', "def ", "return")):
            continue
        for operator, after in [*_text_mutants(line), *_sign_mutants(line)]:
            source = "\n".join(lines[:number - 1] + [after] + lines[number:])
            if source in seen:
                continue
            seen.add(source)
            found.append(Mutant(grade_id, number, operator, line, after, source))
    return found


def all_mutants(solutions: dict[str, str]) -> list[Mutant]:
    return [m for grade_id in (u.grade_id for u in units.UNITS) for m in mutants_of(grade_id, solutions[grade_id])]


def batches(mutants: list[Mutant]) -> list[dict[str, Mutant]]:
    """Pack mutants into notebooks, at most one per unit in each.

    The grader judges every unit on its own: before a unit's cell runs, the worker deletes every
    gradient name and injects autograd's upstream gradients, so a broken cell elsewhere in the same
    notebook cannot change this unit's inputs. Mutants of different units can therefore share a
    notebook, which cuts the number of gradings from one per mutant to the largest count per unit.
    """
    per_unit: dict[str, list[Mutant]] = {}
    for mutant in mutants:
        per_unit.setdefault(mutant.grade_id, []).append(mutant)
    depth = max((len(m) for m in per_unit.values()), default=0)
    return [{gid: ms[i] for gid, ms in per_unit.items() if i < len(ms)} for i in range(depth)]


# ---- equivalence, decided in trusted code ----

EQUIVALENCE_RTOL = 1e-9  # float64 rounding of a right answer is ~1e-16 of the scale; slips are far above this


def _namespace(replay: model.Replay, unit: units.Unit) -> dict:
    meta = worker_side.Meta.from_dict(engine.worker_meta())
    ns = worker_side.replay_variables(replay.values64, meta)  # the names a cell sees, in float64
    if unit.exercise == 1:
        earlier = units.EXERCISE_1[: units.EXERCISE_1.index(unit)]
        ns.update({"d" + u.var: replay.grads[u.var].clone() for u in earlier})
    elif unit.exercise == 3:
        ns["dhpreact"] = replay.grads["hpreact"].clone()
    return ns


def _answers(unit: units.Unit, source: str, replay: model.Replay) -> dict[str, torch.Tensor]:
    ns = _namespace(replay, unit)
    exec(compile(source, f"<mutant of {unit.grade_id}>", "exec"), ns)
    if unit.exercise == 4:
        parameters = [replay.values64[name].clone() for name in model.PARAMETER_NAMES]
        cache = {name: replay.values64[name].clone() for name in worker_side.EX4_CACHE}
        return dict(zip(units.EX4_RETURNS, ns["manual_backward"](parameters, cache)))
    return {unit.answer: ns[unit.answer]}


def equivalence(mutant: Mutant, replays: list[model.Replay]) -> str | None:
    """Why the mutant gives autograd's answer on every replay (in float64), or None if it does not."""
    unit = units.BY_ID[mutant.grade_id]
    largest_gap = 0.0
    for replay in replays:
        try:
            answers = _answers(unit, mutant.source, replay)
        except Exception:
            return None  # it raises: the grader reports an error, it is no right answer
        for name, answer in answers.items():
            reference = replay.grads[name[1:]]
            if not isinstance(answer, torch.Tensor) or answer.shape != reference.shape:
                return None
            judged_as = units.BY_ID[f"ex1_{name[1:]}"] if unit.exercise == 4 else unit
            scale = evidence.tolerance_scale(reference, evidence.upstream_gradients(judged_as, replay.grads))
            gap = (answer.double() - reference).abs().max().item()
            if gap > EQUIVALENCE_RTOL * scale:
                return None
            largest_gap = max(largest_gap, gap / scale)
    return f"matches autograd in float64 on all {len(replays)} replays (largest gap {largest_gap:.1e} of the scale)"
