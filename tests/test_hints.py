"""The hints beside each share in units.py: present for every use, written as words and math (never
as an answer line), and their broadcast notes and shapes agree with the real forward pass."""
from __future__ import annotations

import ast
import contextlib
import inspect
import io
import re
import textwrap

import jupytext
import nbformat
import pytest
import torch

from backprop_ninja import model, units
from backprop_ninja.assign import REPO, notebook_path, solution_cells, text_source
from backprop_ninja.tutor import LOSS_LINE, notebook_code

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
    """Level 2 of the one-go exercises gives the derivatives to take (issue 15: for Exercise 2 that of log Σ e^l,
    for Exercise 3 the three partial derivatives and ∂L/∂σ²); that no piece is assembled into the answer is checked
    below and on the whole notebook in test_markdown.py."""
    ex2 = units.EXERCISE_2.hints["loss"]
    for step in ("−l_y + log Σ_k e^(l_k)", "∂/∂l_j log Σ_k e^(l_k) = e^(l_j) / Σ_k e^(l_k)", "mean"):
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
        else:
            assert not stretched, f"{unit.grade_id}: {consumer} broadcasts it along {stretched}, not marked"


# ---- the first two rungs never state the answer (issue 15) ----
#
# The answer of a unit is read from its reference code (the solutions' answer cell and each share of units.py) as a
# set of features: the tensors and gradients it reads, its operations (a transpose, a sum over a dimension, keepdim,
# a power, a one-hot, ...) and its constants. A hint text states the answer when it mentions every feature of the
# whole answer or of one share together: the gradient flowing in, the reduction and keepdim, say. Exercise 3 is left
# to test_markdown's patterns for its assembled formula: its second rung must name every ingredient of it (the three
# partial derivatives and ∂L/∂σ²), but never put them together.

GRADIENTS = {"d" + name for name in units.SHAPES}
OPERANDS = set(units.SHAPES) | {"Xb", "Yb"} | GRADIENTS
SUBSCRIPT = r"[ijkmc]{1,3}\d*\b|\{"  # x_ij, x_i27, logprobs_{i, Yb_i}: the same tensor, one entry of it


def _name(name: str) -> str:
    """A mention of a tensor by name, alone or with a subscript (counts_ij), not inside a longer name
    (counts_sum)."""
    return rf"(?<![\w]){re.escape(name)}(?![A-Za-z0-9]|_(?!{SUBSCRIPT}))"


def _mention(operand: str) -> str:
    if operand in GRADIENTS:  # dprobs, or in math the gradient of the loss with respect to probs
        var = operand[1:]
        return rf"{_name(operand)}|∂(?:L|loss)/∂{_name(var)}|gradient of {_name(var)}"
    return _name(operand)


AXES = {0: r"\bthe batch\b|\bthe n rows\b|\ball n rows\b|\bdown (?:each|the) column|\bover (?:all )?(?:the )?rows\b",
        1: r"\bthe (?:27 )?columns\b|\b(?:across|along|within) (?:the|each|its|a) row"}
POWERS = {2: r"²|\^\(?2\)?|\bsquare", -2: r"\^\(?[−-]2\)?|\*\*-2", -1.5: r"[−-]3/2|[−-]1\.5", -0.5: r"[−-]1/2|[−-]½"}
FEATURES = {
    "zeros": r"\bzeros?\b|\b(?:is|are|gets?|receives?) 0\b",
    "ones": r"\bones\b|\bcop(?:y|ied|ies)\b",
    "one-hot": r"one[- _]?hot",
    "at the chosen positions": (r"one[- _]?hot|\bat (?:the|those|these) (?:n )?positions?\b|\b(?:at|in) the "
                                r"(?:column|position|entry) of the correct|\bwhen j (?:is|=) y\b|\bj ?= ?y\b"),
    "softmax": r"softmax",
    "argmax": r"arg ?max|\bindices\b|\b(?:holds|attains|position of|where) the max\w*|\bentry that (?:won|wins)",
    "clone": r"\bclone\b|\bunchanged\b|\bcopy\b",
    "reshape": r"\bview\b|\breshap\w*|\brearrang\w*|\barranged back\b",
    "scatter": (r"index_add|scatter|\binto (?:its|their|the) (?:place|row)s?\b|\badd\w* (?:each|every) row\b[^.]{0,40}"
                r"\binto\b"),
    "transpose": r"transpos\w*|ᵀ|\.T\b",
    "keepdim": r"keepdim|\bkeep\w*\b[^.;]{0,25}(?:shape|\(n, 1\)|\(1, 64\)|\bdims?\b)",
    "minus": r"\bminus\b|−|\bnegat\w*|(?:^|[\s(=])-(?=[\w(])",
    "1/n": r"\b1 ?/ ?n\b|\bmean\b|\baverage\w*|\bdivid\w* by n\b|\bover n\b",
    "1/(n-1)": r"n ?[−-] ?1\b",
    "reciprocal": r"\b1 ?/ ?[a-z(]|reciprocal|\bdivid\w*|\^\(?[−-]1\)",
    "epsilon": r"ε|1e-5|10⁻⁵|epsilon",
    "two": r"\b2\b|\btwice\b|\bdouble",
    "half": r"½|0\.5|\b1/2\b",
}


def _is_n(node) -> bool:
    return (isinstance(node, ast.Name) and node.id == "n") or (isinstance(node, ast.Attribute) and node.attr == "n")


def _constant(node):
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return -node.operand.value
    return node.value if isinstance(node, ast.Constant) else None


def answer_features(code: str, answer: str) -> dict[str, str]:
    """Feature -> the pattern of its mention in a text, for the answer that `code` (statements, or one expression
    whose values are `v.<name>`) computes."""
    tree = ast.parse(textwrap.dedent(code))
    found: dict[str, str] = {}
    shape_only: set[int] = set()  # nodes that only give a shape (zeros_like(C), x.view(emb.shape)) or are a part
    # of a feature already counted (the exponent of a power)

    def only_shape(*nodes):
        shape_only.update(id(sub) for node in nodes for sub in ast.walk(node))

    for node in ast.walk(tree):  # breadth first: a call is seen before its arguments
        if id(node) in shape_only:
            continue
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            keywords = {k.arg: k.value for k in node.keywords}
            if name in ("zeros_like", "ones_like"):
                found[name[:-5]] = FEATURES[name[:-5]]
                only_shape(*node.args)
            elif name in ("one_hot", "_one_hot"):
                found["one-hot"] = FEATURES["one-hot"]
                only_shape(*node.args[1:], *node.keywords)
            elif name in ("view", "reshape", "clone", "softmax", "index_add_", "argmax"):
                label = {"view": "reshape", "index_add_": "scatter"}.get(name, name)
                found[label] = FEATURES[label]
                if name in ("view", "reshape"):
                    only_shape(*node.args)
            elif name == "sum" and node.args:
                dim = _constant(node.args[0])
                found[f"sum over dim {dim}"] = (rf"(?:\bsum\w*|\badd\w*|Σ)[^.;]{{0,80}}?(?:\bdims? (?:\d, )*{dim}\b|"
                                                rf"\bdimension {dim}\b|{AXES[dim]})")
                if _constant(keywords.get("keepdim")) is True:
                    found["keepdim"] = FEATURES["keepdim"]
        elif isinstance(node, ast.Attribute):
            if node.attr == "T":
                found["transpose"] = FEATURES["transpose"]
            elif node.attr == "indices":
                found["argmax"] = FEATURES["argmax"]
            elif node.attr == "shape":
                only_shape(node.value)
        elif isinstance(node, ast.BinOp):
            if isinstance(node.op, ast.Pow):
                power = _constant(node.right)
                found[f"power {power}"] = POWERS.get(power, rf"\^\(?[−-]?{abs(power)}")
                only_shape(node.right)  # the exponent is part of the power, not a constant of its own
            elif isinstance(node.op, ast.Div):
                if _is_n(node.right):
                    found["1/n"] = FEATURES["1/n"]
                elif isinstance(node.right, ast.BinOp) and _is_n(node.right.left):
                    found["1/(n-1)"] = FEATURES["1/(n-1)"]
                    only_shape(node.right)  # its minus is part of n-1
                else:
                    found["reciprocal"] = FEATURES["reciprocal"]
            elif isinstance(node.op, ast.Sub):
                found["minus"] = FEATURES["minus"]
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            found["minus"] = FEATURES["minus"]
        elif isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Subscript) for t in targets):  # written at some positions only
                label = "scatter" if isinstance(getattr(node, "op", None), ast.Add) else "at the chosen positions"
                found[label] = FEATURES[label]
            if isinstance(getattr(node, "op", None), ast.Div) and _is_n(node.value):
                found["1/n"] = FEATURES["1/n"]
            if isinstance(getattr(node, "op", None), ast.Sub):
                found["minus"] = FEATURES["minus"]
        elif isinstance(node, ast.Constant) and isinstance(node.value, float | int) and node.value not in (0, 1):
            label = {1e-5: "epsilon", 0.5: "half", 2: "two"}.get(node.value)
            if label:
                found[label] = FEATURES[label]
    for node in ast.walk(tree):
        operand = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) and \
            isinstance(node.value, ast.Name) and node.value.id == "v" else None
        if operand in OPERANDS and operand != answer and id(node) not in shape_only:
            found[operand] = _mention(operand)
    return found


def _expression(function) -> str:
    """The expression a share's lambda computes, as Python source."""
    source = textwrap.dedent(inspect.getsource(function))
    start = source[source.index("lambda v:") + len("lambda v:"):]
    for end in range(len(start), 0, -1):  # the longest prefix that is one expression
        try:
            ast.parse(start[:end].strip(), mode="eval")
            return start[:end].strip()
        except SyntaxError:
            continue
    raise AssertionError(source)


def answers_of(unit) -> list[dict[str, str]]:
    """The feature sets of a unit's answer: the solutions' whole answer cell, then each share on its own."""
    sets = [answer_features(solution_cells()[unit.grade_id], unit.answer)]
    return sets + [answer_features(_expression(share), unit.answer) for share in unit.shares.values()]


def states_an_answer(text: str, unit) -> list[str]:
    """For each feature set of the unit's answer that the text covers whole, its features."""
    return [", ".join(sorted(features)) for features in answers_of(unit)
            if all(re.search(pattern, text, flags=re.IGNORECASE if "d" + unit.var not in pattern else 0)
                   for pattern in features.values())]


def ladder(namespace: dict, name: str) -> list[str]:
    """The first two rungs of hint(name), as printed."""
    out = []
    for _ in range(2):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            namespace["hint"](name)
        out.append(buffer.getvalue())
    return out


def run_tutor(code: str, monkeypatch, folder) -> dict:
    monkeypatch.delenv("BACKPROP_NINJA_SOLUTIONS", raising=False)
    monkeypatch.chdir(folder)
    namespace: dict = {}
    exec(compile(code, "<tutor>", "exec"), namespace)
    return namespace


def hint_name(unit) -> str:
    return unit.var if unit.exercise == 1 else f"ex{unit.exercise}"


TESTED = [u for u in units.UNITS if u.exercise in (1, 2)]


@pytest.mark.parametrize("unit", TESTED, ids=lambda u: u.grade_id)
def test_no_first_or_second_rung_states_the_answer(unit, monkeypatch, tmp_path):
    tutor = run_tutor(notebook_code(), monkeypatch, tmp_path)
    for level, text in enumerate(ladder(tutor, hint_name(unit)), 1):
        assert text.startswith(f"Hint {level} of 3")
        assert states_an_answer(text, unit) == [], f"level {level} of {unit.grade_id} states its answer:\n{text}"


@pytest.mark.parametrize("grade_id, text", [
    # issue 15's examples of a second rung that was the answer in prose, as they stood
    ("ex1_counts_sum_inv", "That is counts times dprobs, entry by entry, summed over dim 1 (the columns), keeping "
                           "the shape (n, 1)."),
    ("ex1_logit_maxes", "its gradient is minus the sum of dnorm_logits over dim 1, keeping (n, 1)."),
    ("ex1_h", "Here that is dlogits, (n, 27), times the transpose of W2, (27, 64), giving (n, 64)."),
    ("ex1_C", "position (i, k) of emb is a copy of the row of C for character Xb_ik. Start from zeros of shape "
              "(27, 10) and add each row of demb into its place."),
    ("ex1_probs", "∂logprobs/∂probs = 1/probs, entry by entry; scale the incoming gradient dlogprobs by it."),
    ("ex1_bnvar", "∂bnvar_inv/∂bnvar = −½ · (bnvar + ε)^(−3/2); just multiply by dbnvar_inv."),
    ("ex2_logits", "The gradient is the softmax of the logits, minus the one-hot of Yb, over n."),
])
def test_the_check_recognises_an_answer_in_prose(grade_id, text):
    assert states_an_answer(text, units.BY_ID[grade_id])


def test_the_features_of_an_answer():
    assert set(answer_features("dh = dlogits @ W2.T", "dh")) == {"dlogits", "W2", "transpose"}
    assert set(answer_features("dC = torch.zeros_like(C)\nfor i in range(Xb.shape[0]):\n"
                               "    dC[Xb[i]] += demb[i]", "dC")) == {"zeros", "scatter", "Xb", "demb"}
    assert set(answer_features("-v.dnorm_logits.sum(1, keepdim=True)", "dlogit_maxes")) == {
        "minus", "dnorm_logits", "sum over dim 1", "keepdim"}


def test_the_ladder_of_exercise_3_assembles_no_formula(monkeypatch, tmp_path):
    from test_markdown import answers_stated

    tutor = run_tutor(notebook_code(), monkeypatch, tmp_path)
    for name in ("ex2", "ex3"):
        for text in ladder(tutor, name):
            assert answers_stated(text) == [], text


def _release_tutor() -> str:
    """The code that defines hint() in the committed release: a cell of its notebook, or a module beside it."""
    release = notebook_path(REPO, "release")
    sources = [cell.source for cell in nbformat.read(release, as_version=4).cells if cell.cell_type == "code"]
    sources += [path.read_text(encoding="utf-8") for path in sorted(release.parent.glob("*.py"))]
    found = [source for source in sources if "def hint(" in source]
    assert len(found) == 1, "the release should define hint() once"
    return found[0]


def test_the_release_holds_no_hint_that_states_an_answer(monkeypatch, tmp_path):
    from test_markdown import answers_stated

    tutor = run_tutor(_release_tutor(), monkeypatch, tmp_path)
    for unit in units.UNITS:
        for level, text in enumerate(ladder(tutor, hint_name(unit)), 1):
            assert text.startswith(f"Hint {level} of 3"), text
            if unit.exercise in (1, 2):
                assert states_an_answer(text, unit) == [], f"{unit.grade_id}, level {level}:\n{text}"
            assert answers_stated(text) == [], f"{unit.grade_id}, level {level}:\n{text}"
            assert "dloss" not in text  # no gradient of that name exists in the notebook


def _rule_from_line(var: str, line: str) -> str:
    """The kind of backward rule a forward line calls for, as the line's code shows it."""
    value = ast.parse(line).body[0].value
    if line.startswith("loss ="):
        return "loss"
    for node in ast.walk(value):
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == var:
            return "lookup"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult) and var in (
                getattr(node.left, "id", None), getattr(node.right, "id", None)):
            return "matmul"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                getattr(node.func.value, "id", None) == var and node.func.attr in ("sum", "max", "view"):
            return {"view": "reshape"}.get(node.func.attr, node.func.attr)
    return "entrywise"


@pytest.mark.parametrize("unit", units.EXERCISE_1, ids=lambda u: u.grade_id)
def test_the_first_rung_names_the_rule_each_line_calls_for(unit):
    lines = {u.var: u.forward for u in units.EXERCISE_1} | {"loss": LOSS_LINE}
    assert set(unit.rule_kinds) == set(unit.consumers)
    for consumer, kind in unit.rule_kinds.items():
        assert kind == _rule_from_line(unit.var, lines[consumer]), (unit.grade_id, consumer)
    assert not unit.overview


def test_the_later_exercises_have_an_overview_instead_of_per_line_rules():
    for unit in (units.EXERCISE_2, units.EXERCISE_3, units.EXERCISE_4):
        assert unit.overview and not unit.rule_kinds
        assert not any(re.search(p, unit.overview) for p in CODE_PATTERNS.values()), unit.grade_id


def test_the_rules_never_name_a_gradient_flowing_in():
    """The first rung says which rule applies; naming the gradient it applies to would leave only the local
    derivative, which is the second rung."""
    for kind, text in units.RULES.items():
        assert not re.search(r"\bd\{(?:consumer|line)\}", text), kind
        assert set(re.findall(r"\{(\w+)\}", text)) <= {"var", "consumer", "line", "count", "dims", "shape"}, kind


def _forward_cell_lines() -> dict[str, str]:
    """Name -> its statement in the text source's forward cell, as written (without the comment)."""
    nb = jupytext.read(text_source(REPO), fmt="py:percent")
    (cell,) = [c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "forward"]
    return {node.targets[0].id: ast.get_source_segment(cell, node) for node in ast.parse(cell).body
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)}


def test_the_tutors_forward_lines_are_the_forward_cells():
    cell = _forward_cell_lines()
    tutor_lines = {u.var: u.forward for u in units.EXERCISE_1 if u.forward != "parameter"} | {"loss": LOSS_LINE}
    assert {var: cell.get(var) for var in tutor_lines} == tutor_lines
    for unit in (units.EXERCISE_2, units.EXERCISE_3):
        assert unit.forward == cell[unit.var]
