"""The rule of Exercises 2 and 3 (grade/one_go.py): their cells read only what the exercise gives.

Pasting Exercise 1's chain into them used to earn full points; a forward function such as F.log_softmax used to
cost them all. The grader and the notebook's check apply the rule with the same code (the notebook has it inlined),
so the message is the same in both."""
from __future__ import annotations

import pytest

from backprop_ninja import assign, notebook_diagnoses, units
from backprop_ninja.grade import grade_notebook, one_go
from backprop_ninja.grade.verdict import NOT_ALLOWED, OK
from fixtures.correct_cells import CORRECT_CELLS
from notebooks import write_submission

RULES = units.one_go_rules()
SOLUTIONS = assign.solution_cells()
EX2, EX3 = units.BY_ID["ex2_logits"], units.BY_ID["ex3_hprebn"]


def problem(source: str, unit=EX2) -> str | None:
    exercise = f"ex{unit.exercise}"
    return one_go.read_problem(source, f"Exercise {unit.exercise}", unit.gives, set(RULES[exercise]["refused"]))


def exercise_1_chain(first: str, last: str) -> str:
    """Exercise 1's answer cells from d<first> to d<last>, one after the other: a paste into a one-go cell."""
    order = [u.var for u in units.EXERCISE_1]
    chosen = order[order.index(first):order.index(last) + 1]
    return "\n".join(SOLUTIONS[f"ex1_{var}"] for var in chosen)


def test_the_rules_come_from_the_table():
    assert RULES["ex2"]["gives"] == ["logits", "Yb", "n"]
    assert {"probs", "counts", "dlogprobs", "loss", "dprobs"} <= set(RULES["ex2"]["refused"])
    assert "dhpreact" in RULES["ex3"]["gives"] and "dhpreact" not in RULES["ex3"]["refused"]
    assert {"bnmeani", "bndiff", "bnvar", "dbnraw", "dbndiff"} <= set(RULES["ex3"]["refused"])
    for rule in RULES.values():
        assert not set(rule["gives"]) & set(rule["refused"])


@pytest.mark.parametrize("unit, source", [
    (EX2, SOLUTIONS["ex2_logits"]),
    (EX3, SOLUTIONS["ex3_hprebn"]),
    (EX2, "dlogits = (F.log_softmax(logits, 1).exp() - F.one_hot(Yb, 27)) / n"),
    (EX2, "probs = F.softmax(logits, 1)  # the student's own name\ndlogits = probs.clone()\ndlogits[range(n), Yb] -= 1"
          "\ndlogits /= n"),
    (EX2, "def soft(x):\n    counts = x.exp()\n    return counts / counts.sum(1, keepdim=True)\n"
          "dlogits = (soft(logits) - F.one_hot(Yb, 27)) / n"),
    (EX2, "dlogits = torch.stack([F.softmax(row, 0) for row in logits])\nfor i in range(n):\n"
          "    probs = dlogits[i]\n    probs[Yb[i]] -= 1\ndlogits = dlogits / n"),
    (EX3, "bnmeani = hprebn.mean(0, keepdim=True)  # recomputed here, fine\n"
          "dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw "
          "* (dhpreact * bnraw).sum(0))"),
])
def test_answers_within_the_rule_pass(unit, source):
    assert problem(source, unit) is None


@pytest.mark.parametrize("unit, source, name, line", [
    (EX2, exercise_1_chain("logprobs", "logits"), "logprobs", 1),
    (EX3, exercise_1_chain("h", "hprebn"), "dlogits", 1),
    (EX2, "dlogits = probs.clone()", "probs", 1),
    (EX2, "x = F.softmax(logits, 1)\ndlogits = x * dprobs", "dprobs", 2),
    (EX2, "dlogits = logits.clone()\ndlogits += counts", "counts", 2),
    (EX2, "def f(x):\n    return x * counts_sum_inv\ndlogits = f(logits)", "counts_sum_inv", 2),
    (EX2, "dlogits = [p * 2 for p in probs][0]", "probs", 1),
    (EX2, "for i in range(n):\n    dlogits = dnorm_logits", "dnorm_logits", 2),
    (EX3, "dhprebn = dbndiff + dbnmeani", "dbndiff", 1),
    (EX3, "dhprebn = torch.zeros_like(hprebn)\ndhprebn += bndiff", "bndiff", 2),
])
def test_reading_exercise_1s_names_is_refused_with_the_name_and_line(unit, source, name, line):
    message = problem(source, unit)
    assert message is not None and message.startswith(f"line {line} reads `{name}`")
    assert all(f"`{given}`" in message for given in unit.gives)


def test_a_name_read_before_the_cell_binds_it_is_still_refused():
    assert problem("dlogits = probs * 2\nprobs = F.softmax(logits, 1)") is not None
    assert problem("probs += 1\ndlogits = probs") is not None  # += reads first


def test_the_notebook_has_the_graders_rule_inlined():
    namespace: dict = {}
    exec(notebook_diagnoses.cell_rules_code(), namespace)
    notebook_rules, notebook_rule = namespace["ONE_GO_RULES"], namespace["_one_go"]
    assert notebook_rules == RULES
    pasted = exercise_1_chain("logprobs", "logits")
    assert notebook_rule.read_problem(pasted, "Exercise 2", EX2.gives, set(RULES["ex2"]["refused"])) == problem(pasted)
    assert notebook_rule.strip_magics("%time x = 1\nfor i in y:\n    %matplotlib inline") == "x = 1\nfor i in y:\n    pass"


def test_the_grader_refuses_a_pasted_chain_and_passes_log_softmax(tmp_path, names_file):
    pasted = write_submission(tmp_path / "pasted.ipynb", {
        **CORRECT_CELLS, "ex2_logits": exercise_1_chain("logprobs", "logits"),
        "ex3_hprebn": exercise_1_chain("h", "hprebn")})
    result = {v.unit: v for v in grade_notebook(pasted, unit_timeout=3.0, total_timeout=60.0).verdicts}
    for grade_id, unit in (("ex2_logits", EX2), ("ex3_hprebn", EX3)):
        assert result[grade_id].status == NOT_ALLOWED and result[grade_id].points == 0
        assert result[grade_id].message.startswith(problem(exercise_1_chain(*(("logprobs", "logits") if unit is EX2
                                                                              else ("h", "hprebn"))), unit)[:40])
    assert all(v.status == OK for k, v in result.items() if k not in ("ex2_logits", "ex3_hprebn"))
    softmax = write_submission(tmp_path / "log_softmax.ipynb", {
        **CORRECT_CELLS, "ex2_logits": "dlogits = (F.log_softmax(logits, 1).exp() - F.one_hot(Yb, 27)) / n"})
    result = {v.unit: v for v in grade_notebook(softmax, unit_timeout=3.0, total_timeout=60.0).verdicts}
    assert result["ex2_logits"].status == OK, result["ex2_logits"].message
