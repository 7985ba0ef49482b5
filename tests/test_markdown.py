"""The markdown above each answer cell teaches, it does not answer (issue 8, point 2).

It states what the forward line does, the shapes involved and which trap may apply, then points to `hint(...)`;
the answer itself lives only in the hint ladder's last rung. These tests read the text source and compare each
answer cell's preceding markdown with that cell's solution.
"""
from __future__ import annotations

import re

import jupytext
import nbformat
import pytest

from backprop_ninja.assign import REPO, TUTOR_CELL, notebook_path, solution_cells, text_source
from backprop_ninja.tutor import notebook_code
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


# ---- the release states no answer of Exercises 2 and 3, in code, in words or in math (issue 13) ----
#
# The checks above compare each cell's markdown with its own solution line. Exercises 2 and 3 can also be given away
# as mathematics or prose anywhere in the notebook (the hint data of the tutor cell, the text after the answer cell),
# so these patterns look for the assembled answers however they are typeset.

HAT = "x\u0302"  # x̂ as the notebooks write it: x and a combining circumflex
SUM = r"(?:Σ|\\sum|\bsum\b|\bsummed\b)"
ANSWER_PATTERNS = {
    "ex2_logits": {
        # F.one_hot itself is a fair tool (Exercise 1's max branch, Exercise 4's speed note); subtracting a one-hot of
        # the targets is Exercise 2's answer
        "a one-hot target subtracted": (r"(?:-|\bminus) ?(?:the |a )?(?:f\.)?one[ _-]?hot"
                                        r"|one[ _-]?hot ?(?:\(yb|(?:vector |encoding )?(?:of )?(?:the )?(?:targets?|"
                                        r"labels?|correct))"),
        "the probabilities minus the target": (r"(?:softmax|probabilit\w*|\bp(?:_\w{1,2})?)\b[^.;:]{0,40}?"
                                               r"(?:\bminus\b|-) ?(?:1\b|one\b|y\b|the target)"),
        "1 taken away at the correct class": (r"(?:\bminus\b|\bsubtract\w*|\btak\w* away|\bless) (?:1|one)\b"
                                              r"[^.]{0,40}(?:correct|target|label)"
                                              r"|\b(?:1|one) (?:taken away|subtracted)[^.]{0,40}(?:correct|target|label)"),
        "1 subtracted in code": r"-= ?1\b",
    },
    "ex3_hprebn": {
        "n times the gradient minus its sum": rf"\bn ?(?:g_?i|dhpreact)\b ?- ?(?:the )?(?:batch )?{SUM}",
        "the Bessel factor times x̂ times a sum": rf"\bn ?/ ?\(n ?- ?1\)[^.;]{{0,25}}(?:{HAT}|bnraw)[^.;]{{0,25}}{SUM}",
        "a sum of the gradient times x̂": (rf"{SUM}\w*(?: of)? ?(?:g|dhpreact)(?:_\w)? ?(?:{HAT}|bnraw)"
                                          r"|\((?:dhpreact ?bnraw|bnraw ?dhpreact)\) ?\.sum"),
        "the common factor over n": r"(?:bngain|γ) ?(?:bnvar_inv|\(σ² ?\+ ?ε\)\^\(-1/2\)) ?/ ?n\b",
    },
}


def _typeset_away(text: str) -> str:
    """One spelling for what typesetting varies: ASCII lower case (Σ and σ stay apart), one minus sign, "minus" and
    "times" as symbols, no multiplication signs or markup, single spaces."""
    text = text.translate(str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ−–", "abcdefghijklmnopqrstuvwxyz--"))
    text = re.sub(r"\\text\{([^}]*)\}", r"\1", text)
    text = re.sub(r"\\cdot|\\times|\\,|[·×*$`]|\btimes\b", " ", text)
    text = re.sub(r"\bminus\b(?! (?:1|one)\b)", "-", text)  # "minus 1 at the correct class" keeps its word
    return re.sub(r"\s+", " ", text)


def answers_stated(text: str) -> list[str]:
    """Which of Exercise 2's and 3's answers the text states, as `grade_id: what`."""
    plain = _typeset_away(text)
    return [f"{grade_id}: {what}" for grade_id, patterns in ANSWER_PATTERNS.items()
            for what, pattern in patterns.items() if re.search(pattern, plain)]


def _release_texts() -> dict[str, str]:
    """Every markdown cell of the committed release and its tutor cell, by grade_id (or cell id)."""
    cells = nbformat.read(notebook_path(REPO, "release"), as_version=4).cells
    return {cell.metadata.get("nbgrader", {}).get("grade_id") or cell.get("id"): cell.source for cell in cells
            if cell.cell_type == "markdown" or cell.get("id") == TUTOR_CELL}


def test_the_release_states_no_answer_of_exercises_2_and_3():
    texts = _release_texts()
    assert TUTOR_CELL in texts and {"ex2_md", "ex2_intuition", "ex3_md"} <= set(texts)
    solutions = solution_cells()
    found = []
    for where, text in texts.items():
        found += [f"{where}: {what}" for what in answers_stated(text)]
        found += [f"{where}: {grade_id} {what}" for grade_id in ANSWER_PATTERNS
                  for what in leaks(text, solutions[grade_id])]
    assert found == []


@pytest.mark.parametrize("with_hints", [True, False])
def test_the_tutor_cell_states_no_answer_of_exercises_2_and_3(with_hints):
    assert answers_stated(notebook_code(with_hints=with_hints)) == []


def test_the_explanation_of_exercise_2_is_in_the_solutions_only():
    """The sentence that says what dlogits is lives in the solution cell, which the release replaces by its stub."""
    explanation = " ".join(line.lstrip("# ") for line in solution_cells()["ex2_logits"].splitlines()
                           if line.startswith("#"))
    assert any(found.startswith("ex2_logits") for found in answers_stated(explanation)), explanation


@pytest.mark.parametrize("text, grade_id", [
    # what the release said before (issue 13), and other ways to say it
    ("the derivative of −log p_y with respect to logit j is p_j − 1 when j is the correct class y and p_j "
     "otherwise: the predicted probabilities, with 1 taken away at the correct class.", "ex2_logits"),
    ("Look at what the gradient *is*: in each row, the predicted probabilities, minus 1 at the correct character.",
     "ex2_logits"),
    ("The gradient is the softmax minus the one-hot target, over n.", "ex2_logits"),
    ("$\\frac{\\partial L}{\\partial l} = (p - y)/n$", "ex2_logits"),
    ("dlogits = (F.softmax(logits, 1) - F.one_hot(Yb, 27)) / n", "ex2_logits"),
    ("the three add up to ∂L/∂hprebn_i = bngain · (σ² + ε)^(−1/2) / n · (n·g_i − Σ_k g_k − n/(n−1) · x\u0302_i · "
     "Σ_k g_k·x\u0302_k)", "ex3_hprebn"),
    ("n times dhpreact minus the batch sum of dhpreact", "ex3_hprebn"),
    ("n/(n-1) times bnraw times the sum of dhpreact times bnraw", "ex3_hprebn"),
    ("dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw "
     "* (dhpreact * bnraw).sum(0))", "ex3_hprebn"),
])
def test_the_patterns_catch_the_answers_in_words_and_math(text, grade_id):
    assert any(found.startswith(grade_id) for found in answers_stated(text)), text


def test_the_patterns_let_the_steps_through():
    steps = ["The first, −l_y, holds only the logit of the correct class: its derivative is −1 when j is y and 0 "
             "for every other j.",
             "∂/∂l_j log Σ_k e^(l_k) = e^(l_j) / Σ_k e^(l_k): entry j of the softmax of the row's logits.",
             "Then remember that the batch loss is the *mean* of the rows.",
             "∂L/∂σ² = −½ (σ² + ε)^(−3/2) Σ_j (∂L/∂x\u0302_j)(x_j − μ), and ∂μ/∂x_i = 1/n.",
             "the mean divides by $n$, the variance by $n-1$"]
    assert [answers_stated(step) for step in steps] == [[]] * len(steps)


# ---- issue 15.8: the numbers in the text are counted from the source ----

def _cells() -> dict[str, str]:
    nb = jupytext.read(text_source(REPO), fmt="py:percent")
    return {cell.metadata.get("nbgrader", {}).get("grade_id", ""): cell.source for cell in nb.cells}


def _forward_names() -> list[str]:
    """The names the forward cell assigns, one per line, from the embedding lookup to the loss."""
    import ast

    names = [node.targets[0].id for node in ast.parse(_cells()["forward"]).body
             if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)]
    return names[names.index("emb"): names.index("loss") + 1]


def _stated(pattern: str, text: str) -> int:
    found = re.search(pattern, text)
    assert found, f"the text no longer says {pattern!r}: update this test with the sentence"
    return int(found.group(1))


def test_the_step_counts_in_the_text_are_those_of_the_forward_pass():
    cells, names = _cells(), _forward_names()
    assert names[-1] == "loss" and "logits" in names
    assert _stated(r"cut into (\d+) small steps", cells["intro"]) == len(names)
    assert _stated(r"(\d+) gradients in all", cells["intro"]) == len(EXERCISE_1)
    after_logits = names[names.index("logits") + 1:]
    assert _stated(r"The (\d+) lines of the forward pass after `logits`", cells["ex2_md"]) == len(after_logits)
    assert f"from `{after_logits[0]}` to `{after_logits[-1]}`" in cells["ex2_md"]


def test_exercise_2_fits_in_the_lines_the_text_allows():
    code = [line for line in solution_cells()["ex2_logits"].splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    assert _stated(r"in (\d+) lines or fewer", _cells()["ex2_md"]) == len(code)


def test_the_helpers_example_answers_no_unit():
    """finite_difference's worked example differentiates an operation the forward pass never uses, so it gives
    away no local derivative (it was t**-1 once: dcounts_sum's own)."""
    import ast

    helpers, forward = ast.parse(_cells()["helpers"]), ast.parse(_cells()["forward"])
    examples = [node.args[0] for node in ast.walk(helpers) if isinstance(node, ast.Call)
                and getattr(node.func, "id", "") == "finite_difference" and isinstance(node.args[0], ast.Lambda)]
    assert examples, "the helpers cell has no finite_difference(lambda ...) example"

    def operations(tree) -> set[str]:
        ops = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
        ops |= {type(node.op).__name__ for node in ast.walk(tree) if isinstance(node, ast.BinOp)}
        return ops - {"sum"}  # a sum makes the example's function a scalar, it is no local derivative

    for example in examples:
        assert operations(example) and not operations(example) & operations(forward), ast.unparse(example)


def test_the_short_run_target_is_what_the_solutions_notebook_reaches():
    """The solutions notebook is executed on the 1,000-step schedule of Validate and the autograder: the validation
    loss the training text promises for it is the one that run printed, to two decimals."""
    cells = nbformat.read(notebook_path(REPO, "solutions"), as_version=4).cells
    printed = "".join(output.get("text", "") for cell in cells
                      if cell.metadata.get("nbgrader", {}).get("grade_id") == "eval" for output in cell.outputs)
    reached = float(re.search(r"val loss\s+([\d.]+)", printed).group(1))
    promised = re.search(r"about\s+([\d.]+)\s+after\s+the\s+1,000\s+steps", _cells()["train_md"])
    assert promised, "train_md no longer gives the 1,000-step target: update this test with the sentence"
    assert float(promised.group(1)) == round(reached, 2), (promised.group(0), reached)
