"""The hints beside each share in units.py: present for every use, written as words and math (never
as an answer line), and their broadcast notes and shapes agree with the real forward pass."""
from __future__ import annotations

import inspect
import re

import pytest
import torch

from backprop_ninja import model, units

GRADED = [u for u in units.UNITS if u.exercise in (1, 2, 3)]

# What a pasted answer line would contain and a hint written in words and math would not.
CODE_PATTERNS = {
    "a torch call": r"\btorch\b|\bF\.",
    "a method call": r"\.\w+\(",
    "an assignment to a gradient": r"\bd\w+\s*[-+*/]?=[^=]",
    "a Python operator": r"@|\*|//|\blambda\b",
    "indexing or a list": r"[\[\]]",
    "a keyword argument": r"\b(?:keepdim|dim|dtype|num_classes)\s*=",
    "a transpose attribute": r"\.T\b",
    "the values namespace of the shares": r"\bv\.\w",
}


def _share_source(share) -> str:
    """The expression a share computes, as written in units.py, without the `v.` namespace."""
    source = inspect.getsource(share)
    match = re.search(r"lambda v:\s*(.*)", source) or re.search(r"return\s*(.*)", source, re.DOTALL)
    expression = match.group(1) if match else ""
    return re.sub(r"\s|\bv\.", "", expression).rstrip(",)")


def _shape(text: str, n: int) -> tuple[int, ...]:
    assert re.fullmatch(r"\((?:(?:n|\d+)(?:, (?:n|\d+))*,?)?\)", text), text
    return tuple(n if d.strip() == "n" else int(d) for d in text.strip("()").split(",") if d.strip())


def _stretched(var: torch.Size, consumer: torch.Size) -> set[int]:
    """The consumer's dims along which `var` was broadcast (none if `var` does not broadcast to it)."""
    try:
        if torch.broadcast_shapes(var, consumer) != consumer:
            return set()
    except RuntimeError:
        return set()
    padded = (1,) * (len(consumer) - len(var)) + tuple(var)
    return {d for d, (a, b) in enumerate(zip(padded, consumer)) if a != b}


def _dims(note: str) -> set[int]:
    assert re.fullmatch(r"dims? \d+(, \d+)*", note), f"broadcast note {note!r}: write 'dim 0' or 'dims 0, 1'"
    return {int(d) for d in re.findall(r"\d+", note)}


@pytest.fixture(scope="module")
def forward_values(names_file):
    # a batch size equal to no other dimension of the network, so no shape matches by accident
    n = 5
    X, Y = model.build_dataset(model.split_words(names_file.read_text(encoding="utf-8").splitlines())[0])
    return n, model.make_replay(X, Y, 123, n).values64


@pytest.mark.parametrize("unit", GRADED, ids=lambda u: u.grade_id)
def test_every_use_has_a_hint_and_only_the_uses(unit):
    assert unit.consumers, unit.grade_id
    assert set(unit.hints) == set(unit.consumers)
    assert set(unit.broadcast) <= set(unit.consumers)
    for consumer, hint in unit.hints.items():
        assert isinstance(hint, str) and len(hint.split()) >= 12, (unit.grade_id, consumer)


def test_exercise_4_has_one_general_hint_naming_the_returns():
    unit = units.EXERCISE_4
    assert unit.consumers == () and unit.broadcast == {} and unit.shape == ""
    assert set(unit.hints) == {units.EX4_HINT_KEY}
    names = re.findall(r"\bd\w+", unit.hints[units.EX4_HINT_KEY])
    assert [name for name in names if name in units.EX4_RETURNS] == list(units.EX4_RETURNS)


def test_exercises_2_and_3_hints_give_the_steps_of_the_derivation():
    """Level 2 of the one-go exercises names each piece to differentiate (issue 13); that no piece is assembled into
    the answer is checked on the whole notebook in test_markdown.py."""
    ex2 = units.EXERCISE_2.hints["loss"]
    for step in ("−l_y + log Σ_k e^(l_k)", "e^(l_j) / Σ_k e^(l_k)", "−1 when j is y", "mean", "1/n"):
        assert step in ex2, step
    ex3 = units.EXERCISE_3.hints["hpreact"]
    for step in ("∂x\u0302_i/∂x_i =", "∂μ/∂x_i = 1/n", "∂x\u0302_j/∂μ =", "∂σ²/∂x_i = 2(x_i − μ)/(n−1)",
                 "∂x\u0302_j/∂σ² =", "∂L/∂σ² ="):
        assert step in ex3, step


@pytest.mark.parametrize("unit", units.UNITS, ids=lambda u: u.grade_id)
def test_hints_are_words_and_math_not_code(unit):
    for consumer, hint in unit.hints.items():
        for what, pattern in CODE_PATTERNS.items():
            found = re.search(pattern, hint)
            assert not found, f"{unit.grade_id} / {consumer}: {what}: {found.group(0)!r}"
        if consumer:
            expression = _share_source(unit.shares[consumer])
            assert expression and expression not in re.sub(r"\s", "", hint), (unit.grade_id, consumer)


def test_code_patterns_catch_pasted_answer_lines():
    """The checks above would notice a share's own line pasted into a hint."""
    for unit in GRADED:
        for consumer, share in unit.shares.items():
            line = f"{unit.answer} = {_share_source(share)}"
            assert any(re.search(p, line) for p in CODE_PATTERNS.values()), line


@pytest.mark.parametrize("unit", GRADED, ids=lambda u: u.grade_id)
def test_shapes_match_the_forward_pass(unit, forward_values):
    n, values = forward_values
    assert units.SHAPES.get(unit.var) == unit.shape
    assert tuple(values[unit.var].shape) == _shape(unit.shape, n)


def test_every_variable_has_a_shape(forward_values):
    n, values = forward_values
    for name in model.INTERMEDIATES + model.PARAMETER_NAMES + ("loss",):
        assert tuple(values[name].shape) == _shape(units.SHAPES[name], n), name


@pytest.mark.parametrize("unit", GRADED, ids=lambda u: u.grade_id)
def test_broadcast_notes_agree_with_the_real_shapes(unit, forward_values):
    _, values = forward_values
    var = values[unit.var].shape
    for consumer in unit.consumers:
        stretched = _stretched(var, values[consumer].shape)
        if consumer in unit.broadcast:
            assert values[consumer].numel() > values[unit.var].numel(), (unit.grade_id, consumer)
            assert _dims(unit.broadcast[consumer]) == stretched, (unit.grade_id, consumer)
            assert unit.broadcast[consumer] in unit.hints[consumer], "the hint should name the summed dims"
        else:
            assert not stretched, f"{unit.grade_id}: {consumer} broadcasts it along {stretched}, not marked"
