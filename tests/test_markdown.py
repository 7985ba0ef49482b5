"""The markdown above each answer cell teaches, it does not answer (issue 8, point 2).

It states what the forward line does, the shapes involved and which trap may apply, then points to `hint(...)`;
the answer itself lives only in the hint ladder's last rung. These tests read the text source and compare each
answer cell's preceding markdown with that cell's solution.
"""
from __future__ import annotations

import re

import jupytext
import pytest

from backprop_ninja.assign import REPO, solution_cells, text_source
from backprop_ninja.units import BY_ID, EXERCISE_1, UNITS

MIN_CHARS = 8  # solution lines and right-hand sides shorter than this (`n`, `1`, `-1.0/n`) are too trivial to flag
GRADIENTS = {u.answer for u in UNITS if u.var}  # dlogprobs, dprobs, ...


def preceding_markdown() -> dict[str, str]:
    """grade_id of every answer cell -> the last markdown cell above it (a group of cells shares one)."""
    nb = jupytext.read(text_source(REPO), fmt="py:percent")
    found, markdown = {}, ""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            markdown = cell.source
            continue
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            found[meta["grade_id"]] = markdown
    return found


def _plain(text: str) -> str:
    """Spaces removed: how code looks however it is spaced."""
    return re.sub(r"\s+", "", text)


def _loose(text: str) -> str:
    """Code or prose reduced to its names and numbers in order, so that an answer written out in words still shows:
    markup ($, backticks, \\text{}, \\,) and asides in parentheses go, "times", ·, ×, * and the remaining parentheses
    go, spaces go. `bnvar_inv` (broadcast) times `dbnraw` and (bnvar_inv * dbnraw) both become bnvar_invdbnraw."""
    text = re.sub(r"\\text\{([^}]*)\}", r"\1", text)
    text = re.sub(r"\\[,;! ]|\\cdot|\\times|[`$]", " ", text)
    text = re.sub(r"\(\s*[A-Za-z][A-Za-z ,']*\)", " ", text)  # asides such as "(broadcast)", "(the batch)"
    text = re.sub(r"\btimes\b|[·×*()]", " ", text)
    return re.sub(r"\s+", "", text)


def _code_lines(solution: str) -> list[str]:
    lines = [line.split("#")[0].strip() for line in solution.splitlines()]
    return [line for line in lines if len(_plain(line)) >= MIN_CHARS and not line.startswith(('"""', "def "))]


def _right_hand_sides(solution: str) -> list[str]:
    """The expressions the solution assigns (`x = ...`, `x += ...`), except a bare name such as `parameters`."""
    sides = []
    for line in _code_lines(solution):
        match = re.match(r"^[^=]*?(?:[-+*/]?=)(?!=)(.+)$", line)
        if not match:
            continue
        side = match.group(1).strip()
        if len(_plain(side)) < MIN_CHARS or re.fullmatch(r"[A-Za-z_]\w*", side):
            continue
        sides.append(side)
        # a part in parentheses that involves a gradient, such as (dhpreact * bnraw), is already half the answer;
        # parts without one, such as (bnvar + 1e-5), only repeat the forward pass
        sides += [part for part in _parenthesised(side) if len(_plain(part)) >= MIN_CHARS
                  and GRADIENTS & set(re.findall(r"\w+", part))]
    return sides


def _parenthesised(expression: str) -> list[str]:
    parts, opened = [], []
    for index, char in enumerate(expression):
        if char == "(":
            opened.append(index)
        elif char == ")" and opened:
            start = opened.pop()
            parts.append(expression[start + 1:index])
    return parts


def leaks(markdown: str, solution: str) -> list[str]:
    """What the markdown gives away of the solution: whole lines, or assigned expressions, as the test reports them."""
    found = []
    plain, loose = _plain(markdown), _loose(markdown)
    for line in _code_lines(solution):
        if _plain(line) in plain:
            found.append(f"solution line {line!r}")
    for side in _right_hand_sides(solution):
        if _plain(side) in plain:
            found.append(f"answer expression {side!r}")
        elif len(_loose(side)) >= MIN_CHARS and _loose(side) in loose:
            found.append(f"answer expression {side!r}, written out in words")
    return found


ANSWER_CELLS = sorted(solution_cells())


def test_every_answer_cell_has_markdown_above_it():
    markdown = preceding_markdown()
    assert set(markdown) == set(ANSWER_CELLS)
    assert all(text.strip() for text in markdown.values())


@pytest.mark.parametrize("grade_id", ANSWER_CELLS)
def test_markdown_does_not_give_the_answer_away(grade_id):
    markdown = preceding_markdown()[grade_id]
    found = leaks(markdown, solution_cells()[grade_id])
    assert not found, f"the markdown above {grade_id} gives away: " + "; ".join(found)


@pytest.mark.parametrize("unit", EXERCISE_1, ids=lambda u: u.grade_id)
def test_exercise_1_markdown_states_the_shape_and_points_to_the_hint(unit):
    markdown = preceding_markdown()[unit.grade_id]
    assert f"`{unit.shape}`" in markdown, f"the markdown above {unit.grade_id} should state the shape {unit.shape}"
    assert re.search(rf"""hint\(["']d?{unit.var}["']\)""", markdown), \
        f"the markdown above {unit.grade_id} should end with a pointer to hint({unit.var!r})"


@pytest.mark.parametrize("unit", EXERCISE_1, ids=lambda u: u.grade_id)
def test_exercise_1_markdown_names_the_trap(unit):
    """A variable used twice accumulates; a broadcast means a sum. The markdown says which applies, not how."""
    markdown = preceding_markdown()[unit.grade_id].lower()
    if len(unit.consumers) > 1:
        assert "used twice" in markdown, f"{unit.grade_id}: say that {unit.var} is used twice"
    if unit.broadcast:
        assert "broadcast" in markdown, f"{unit.grade_id}: say that {unit.var} was broadcast"


@pytest.mark.parametrize("grade_id, name", [("ex2_logits", "ex2"), ("ex3_hprebn", "ex3"), ("ex4_backward", "ex4")])
def test_later_exercises_point_to_their_hint(grade_id, name):
    assert grade_id in BY_ID
    assert f'hint("{name}")' in preceding_markdown()[grade_id]


@pytest.mark.parametrize("markdown, solution", [
    ("the only way to get that is `dlogits @ W2.T`.", "dh = dlogits @ W2.T"),
    ("Add both: `bnvar_inv` (broadcast) times `dbnraw`, and $2\\,\\text{bndiff}$ times `dbndiff2`.",
     "dbndiff = bnvar_inv * dbnraw\ndbndiff += (2 * bndiff) * dbndiff2"),
    ("so it is `(counts*dprobs).sum(1, keepdim=True)`", "dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)"),
    ("`bnraw` times the batch sum of `dhpreact * bnraw`",
     "dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))"),
])
def test_the_check_catches_answers_in_code_and_in_words(markdown, solution):
    assert leaks(markdown, solution)


def test_the_check_lets_concepts_through():
    markdown = ("`bndiff` is **used twice**: once in `bnraw = bndiff * bnvar_inv` and once in `bndiff2 = bndiff**2`. "
                "Its shape is `(n, 64)`. Stuck? `hint(\"bndiff\")`")
    assert not leaks(markdown, "dbndiff = bnvar_inv * dbnraw\ndbndiff += (2 * bndiff) * dbndiff2")
