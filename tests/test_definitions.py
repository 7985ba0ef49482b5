"""Which statements of a cell the student added are replayed (backprop_ninja/grade/definitions.py), and how an
answer that uses them is scanned. Pure `ast`: nothing here runs student code."""
from __future__ import annotations

from backprop_ninja import units
from backprop_ninja.grade import definitions, extract

ADDED = '''
import torch.nn.functional as Fn
from os import *
eps = 1e-3
a, (b, c) = 1, (2, 3)
softmax = lambda x: x.exp() / x.exp().sum(1, keepdim=True)
max_steps = int(2e5)
dprobs = 0.5
W1[0] = 3
lr: float = 0.1
for step in range(max_steps):
    pass
print("training")
@torch.no_grad()
def helper(x):
    return x.sum(0, keepdim=True)
class Layer:
    pass
'''
PROBS = units.BY_ID["ex1_probs"]


def _bound(source: str) -> list[set[str]]:
    return [set(d.binds) for d in definitions.from_added_cells([(0, source)])]


def test_only_definitions_without_calls_are_replayed():
    assert _bound(ADDED) == [{"Fn"}, {"eps"}, {"a", "b", "c"}, {"softmax"}, {"lr"}, {"helper"}, {"Layer"}]


def test_a_definition_keeps_its_decorators():
    helper = next(d for d in definitions.from_added_cells([(0, ADDED)]) if d.kind == "function")
    assert helper.source.startswith("@torch.no_grad()\ndef helper(x):")


def test_a_cell_that_does_not_parse_gives_nothing():
    assert definitions.from_added_cells([(0, "def f(:\n")]) == []


def test_each_definition_goes_to_the_first_answer_after_it():
    found = definitions.from_added_cells([(2, "x = 1"), (5, "y = 2"), (9, "z = 3")])
    order = [("ex1_logprobs", 1), ("ex1_probs", 3), ("ex1_counts_sum_inv", 6), ("ex1_counts_sum", 7)]
    assert definitions.preludes(order, found) == {"ex1_probs": ["x = 1"], "ex1_counts_sum_inv": ["y = 2"]}


def test_autograd_in_a_helper_is_found_through_another_helper():
    found = definitions.from_added_cells([(0, "def inner(t):\n    return t.grad\ndef outer(t):\n    return inner(t)")])
    assert [d.flagged for d in found] == [True, False]
    use = definitions.check_use("dprobs = outer(probs)", PROBS, 1, found)
    assert use.finding is not None and "`outer`, defined in a cell you added" in use.finding.message
    assert "`inner`" in use.finding.message and ".grad" in use.finding.message
    assert definitions.preludes([("ex1_probs", 1)], found) == {"ex1_probs": [found[1].source]}  # inner: never


def test_a_flagged_helper_only_called_for_its_printout_becomes_a_stand_in():
    found = definitions.from_added_cells([(0, "def cmp(s, dt, t):\n    print(s, (dt - t.grad).abs().max())")])
    use = definitions.check_use("dprobs = dlogprobs / probs\ncmp('probs', dprobs, probs)", PROBS, 1, found)
    assert use == definitions.Use(silenced=("cmp",))
    assert definitions.check_use("x = cmp('probs', 1, 2)", PROBS, 1, found).finding is not None


def test_a_flagged_helper_that_sets_the_answer_as_a_global_is_the_answer_not_a_stand_in():
    for body in ("global dprobs\n    dprobs = probs.grad", "globals()['dprobs'] = probs.grad"):
        found = definitions.from_added_cells([(0, f"def steal():\n    {body}")])
        use = definitions.check_use("steal()", PROBS, 1, found)
        assert use.silenced == () and use.finding is not None, body
        assert "`steal`, defined in a cell you added" in use.finding.message and ".grad" in use.finding.message
    # a global of another name is not the answer: the call still cannot reach dprobs
    found = definitions.from_added_cells([(0, "def note():\n    global seen\n    seen = probs.grad")])
    assert definitions.check_use("dprobs = 1 / probs * dlogprobs\nnote()", PROBS, 1, found).silenced == ("note",)


def test_an_import_alias_from_an_added_cell_is_resolved_in_the_answer():
    found = definitions.from_added_cells([(0, "import torch as T")])
    use = definitions.check_use("dprobs = T.func.vjp(f, probs)[1](dlogprobs)", PROBS, 1, found)
    assert use.finding is not None and "torch.func" in use.finding.message


def test_extract_keeps_added_code_cells_and_answer_positions():
    cells = [{"cell_type": "code", "metadata": {}, "source": "def f():\n    pass"},
             {"cell_type": "markdown", "metadata": {}, "source": "x = 1"},
             {"cell_type": "code", "metadata": {"nbgrader": {"grade_id": "ex1_probs"}}, "source": "dprobs = 1"},
             {"cell_type": "code", "metadata": {"nbgrader": {"grade_id": "imports"}}, "source": "import os"}]
    found = extract.answers_from_cells(cells)
    assert found.added == [(0, "def f():\n    pass")] and found.positions == {"ex1_probs": 2}
