"""The static scan flags every way to ask autograd (or a library function) and nothing else."""
from __future__ import annotations

import pytest

from backprop_ninja import assign, notebook_diagnoses, units
from backprop_ninja.grade.static import Finding, scan, strip_magics

EX1_LOGPROBS = units.BY_ID["ex1_logprobs"]
EX2 = units.BY_ID["ex2_logits"]
EX3 = units.BY_ID["ex3_hprebn"]
EX4 = units.BY_ID["ex4_backward"]

FLAGGED = {
    "reads .grad": ("dlogprobs = logprobs.grad", "`.grad`", 1),
    "calls .backward": ("loss.backward()\ndlogprobs = logprobs.grad", "`.backward`", 1),
    "retain_grad": ("x = 1\nlogprobs.retain_grad()", "`.retain_grad`", 2),
    "requires_grad attribute": ("logprobs.requires_grad = True", "`.requires_grad`", 1),
    "requires_grad keyword": ("t = torch.zeros(3, requires_grad=True)", "`requires_grad=`", 1),
    "grad_fn": ("f = loss.grad_fn", "`.grad_fn`", 1),
    "torch.autograd call": ("dlogprobs, = torch.autograd.grad(loss, [logprobs])", "`torch.autograd`", 1),
    "torch.func": ("g = torch.func.grad(f)", "`torch.func`", 1),
    "import torch.autograd as": ("import torch.autograd as ag\nd = ag.grad(loss, x)", "`torch.autograd`", 1),
    "from torch import autograd": ("from torch import autograd\n", "`torch.autograd`", 1),
    "from torch.func import": ("from torch.func import vjp", "`torch.func`", 1),
    "import functorch": ("import functorch", "`functorch`", 1),
    "aliased torch": ("import torch as t\nd = t.autograd.grad(loss, x)", "`torch.autograd`", 2),
    "getattr constant": ('d = getattr(logprobs, "grad")', "getattr", 1),
}


@pytest.mark.parametrize("source, construct, line", FLAGGED.values(), ids=FLAGGED.keys())
def test_each_autograd_construct_is_flagged_with_its_line(source, construct, line):
    finding = scan(source, EX1_LOGPROBS)
    assert finding is not None and finding.kind == "autograd"
    assert construct in finding.message
    assert finding.message.startswith(f"line {line} ")


def test_the_reported_line_is_the_one_with_the_construct():
    finding = scan("a = 1\nb = 2\nd = x.grad\n", EX1_LOGPROBS)
    assert finding.message.startswith("line 3 ")


@pytest.mark.parametrize("source, unit, construct", [
    ("dlogits = F.cross_entropy(logits, Yb)", EX2, "F.cross_entropy"),
    ("from torch.nn.functional import nll_loss", EX2, "nll_loss"),
    ("loss = cross_entropy(logits, Yb)", EX2, "cross_entropy"),
    ("out = torch.nn.functional.batch_norm(x, m, v)", EX3, "batch_norm"),
    ("bn = torch.nn.BatchNorm1d(64)", EX3, "BatchNorm1d"),
])
def test_the_units_forbidden_functions_are_flagged(source, unit, construct):
    finding = scan(source, unit)
    assert finding is not None and finding.kind == "autograd"
    assert construct in finding.message


def test_forbidden_functions_are_per_unit():
    # Exercise 1 may compare with F.cross_entropy (the lecture does); only Exercise 2 must not use it.
    assert scan("loss_check = F.cross_entropy(logits, Yb)", EX1_LOGPROBS) is None


CLEAN = {
    "ex1": ("dlogprobs = torch.zeros_like(logprobs)\n"
            "dlogprobs[range(n), Yb] = -1.0/n  # not .grad: by hand\n", EX1_LOGPROBS),
    "ex2": ("dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1\ndlogits /= n", EX2),
    "ex3": ("dhprebn = bngain*bnvar_inv/n * (n*dhpreact - dhpreact.sum(0)"
            " - n/(n-1)*bnraw*(dhpreact*bnraw).sum(0))", EX3),
    "ex4 defines a backward function": (
        "def manual_backward(C, W1, b1, W2, b2, bngain, bnbias, Xb, Yb):\n"
        "    gradient_note = 'no .grad here'\n"
        "    my_backward_helper = 1\n"
        "    return dC, dW1, db1, dW2, db2, dbngain, dbnbias\n", EX4),
    "names containing grad": ("gradient = 1\ngrads = [gradient]\nupgrad = grads[0]", EX1_LOGPROBS),
}


@pytest.mark.parametrize("source, unit", CLEAN.values(), ids=CLEAN.keys())
def test_clean_solution_code_is_not_flagged(source, unit):
    assert scan(source, unit) is None


def test_magics_and_shell_lines_are_tolerated():
    source = "%time x = 1\n!ls -l\n%%capture\ndlogprobs = torch.zeros_like(logprobs)\n"
    assert scan(source, EX1_LOGPROBS) is None


def test_magics_keep_the_line_numbers_of_later_lines():
    finding = scan("%time x = 1\nd = logprobs.grad\n", EX1_LOGPROBS)
    assert finding.message.startswith("line 2 ")


def test_a_syntax_error_is_reported_with_its_line():
    finding = scan("a = 1\nb = (2 +\n", EX1_LOGPROBS)
    assert finding is not None and finding.kind == "syntax"
    assert "line 2" in finding.message or "line 3" in finding.message
    finding = scan("x = 1\ny = = 2\n", EX1_LOGPROBS)
    assert finding.kind == "syntax" and finding.message.startswith("line 2 ")


# ---- the C++ engine, imports by name, Parameters, the numerical helper ----

ENGINE = "the C++ engine's internals"
REACHES_AUTOGRAD = {
    "torch._C attribute chain": ("s = torch._C._get_tracing_state()", "uses `torch._C`", ENGINE, 1),
    "import torch._C": ("import torch._C", "imports `torch._C`", ENGINE, 1),
    "from torch._C import": ("from torch._C import _functions", "imports `torch._C`", ENGINE, 1),
    "from torch import _C": ("from torch import _C", "imports `torch._C`", ENGINE, 1),
    "getattr torch _C": ('engine = getattr(torch, "_C")', "reads `._C` through getattr", ENGINE, 1),
    "aliased torch _C": ("import torch as t\nengine = t._C", "uses `torch._C`", ENGINE, 2),
    "_C through another name": ("m = torch\nengine = m._C", "reads `._C`", ENGINE, 2),
    "import_module autograd": ('import importlib\nfa = importlib.import_module("torch.autograd.forward_ad")',
                               "imports `torch.autograd` through importlib.import_module", "by hand", 2),
    "import_module imported by name": ('from importlib import import_module as load\nf = load("functorch")',
                                       "imports `functorch` through importlib.import_module", "by hand", 2),
    "import_module relative": ('import importlib\nag = importlib.import_module(".autograd", package="torch")',
                               "imports `torch.autograd` through importlib.import_module", "by hand", 2),
    "import_module torch._C": ('engine = importlib.import_module(name="torch._C")',
                               "imports `torch._C` through importlib.import_module", ENGINE, 1),
    "__import__ torch.func": ('f = __import__("torch.func")', "imports `torch.func` through __import__", "by hand", 1),
    "__import__ fromlist": ('t = __import__("torch", fromlist=["autograd"])',
                            "imports `torch.autograd` through __import__", "by hand", 1),
    "builtins.__import__": ('import builtins\nf = builtins.__import__("torch.func")',
                            "imports `torch.func` through builtins.__import__", "by hand", 2),
    "nn.Parameter": ("p = nn.Parameter(logprobs)", "uses `torch.nn.Parameter`", "requires grad", 1),
    "torch.nn.Parameter": ("p = torch.nn.Parameter(logprobs)", "uses `torch.nn.Parameter`", "requires grad", 1),
    "torch.nn.parameter.Parameter": ("p = torch.nn.parameter.Parameter(logprobs)",
                                     "uses `torch.nn.parameter.Parameter`", "requires grad", 1),
    "aliased nn": ("import torch.nn as tnn\np = tnn.Parameter(logprobs)", "uses `torch.nn.Parameter`",
                   "requires grad", 2),
    "from torch.nn import Parameter": ("from torch.nn import Parameter", "imports `torch.nn.Parameter`",
                                       "requires grad", 1),
    "getattr Parameter": ('P = getattr(nn, "Parameter")', "reads `Parameter` through getattr", "requires grad", 1),
    "finite_difference": ("dprobs = finite_difference(lambda p: p.sum(), probs)", "uses `finite_difference`",
                          "the notebook's `finite_difference` checks a gradient numerically; an answer must be "
                          "derived by hand", 1),
}


@pytest.mark.parametrize("source, construct, reason, line", REACHES_AUTOGRAD.values(), ids=REACHES_AUTOGRAD.keys())
def test_other_ways_to_reach_autograd_are_flagged_with_construct_reason_and_line(source, construct, reason, line):
    finding = scan(source, EX1_LOGPROBS)
    assert finding is not None and finding.kind == "autograd"
    assert finding.message.startswith(f"line {line} {construct}: ")
    assert reason in finding.message


LOOKS_CLOSE_BUT_CLEAN = {
    "own helper named finite_difference, defined only": "def finite_difference(f, x):\n    return x\n",
    "import_module of another module": 'import importlib\nm = importlib.import_module("torch.nn.functional")',
    "a module name in a string": 'note = "torch.autograd and torch._C are not used here"',
    "import_module with a computed name": 'm = importlib.import_module(prefix + ".x")',
    "a name containing C": "dC = torch.zeros_like(C)\nC_copy = C.clone()",
    "nn.functional": "p = nn.functional.softmax(logits, 1)",
    "a class named Parameter elsewhere": "p = inspect.Parameter",
}


@pytest.mark.parametrize("source", LOOKS_CLOSE_BUT_CLEAN.values(), ids=LOOKS_CLOSE_BUT_CLEAN.keys())
def test_constructs_that_only_look_close_are_not_flagged(source):
    assert scan(source, EX1_LOGPROBS) is None


# ---- cells Python's parser cannot read: a finding, never an exception ----

TOO_DEEP = {
    "200000 parentheses": ("x = " + "(" * 200_000 + "1" + ")" * 200_000,
                           "line 1 does not parse: more than 200 nested parentheses or brackets; "
                           "split the expression into smaller steps"),
    "nested lists": ("x = 1\ny = " + "[" * 100_000 + "]" * 100_000,
                     "line 2 does not parse: more than 200 nested parentheses or brackets; "
                     "split the expression into smaller steps"),
    "a million unary minuses": ("x = " + "-" * 1_000_000 + "1",
                                "the cell is nested too deeply for Python to read (thousands of nested operators or "
                                "calls): simplify the expression, one step per line"),
    "a long attribute chain": ("x = a" + ".b" * 100_000,
                               "the cell is nested too deeply for Python to read (thousands of nested operators or "
                               "calls): simplify the expression, one step per line"),
}


@pytest.mark.parametrize("source, message", TOO_DEEP.values(), ids=TOO_DEEP.keys())
def test_a_cell_nested_too_deeply_is_a_syntax_finding(source, message):
    assert scan(source, EX1_LOGPROBS) == Finding("syntax", message)


def test_characters_python_rejects_are_syntax_findings():
    surrogate = scan("x = 1\ny = '\ud800'", EX1_LOGPROBS)
    assert surrogate == Finding("syntax", "line 2 does not parse: it holds '\\ud800', which is not text "
                                          "(an unpaired surrogate); delete that character")
    nul = scan("x = 1\x00", EX1_LOGPROBS)
    assert nul.kind == "syntax" and nul.message.startswith("the cell does not parse: ") and "null" in nul.message


def test_strip_magics_handles_huge_lines_line_for_line():
    lines = ["%timeit" + " -n 10" * 200_000 + " y = 2", "%time" + " " * 1_000_000 + "x = 1", "%matplotlib inline",
             "(" * 100_000]
    assert strip_magics("\n".join(lines)).split("\n") == ["y = 2", "x = 1", "", "(" * 100_000]


# ---- the notebook runs this very scan: its inlined copy finds the same thing ----

def _notebook_scan():
    """The `_scan` namespace the notebook's diagnoses cell defines, run with nothing else around it (it needs no
    torch: only `ast`)."""
    namespace = {}
    exec(compile(notebook_diagnoses.scan_code(), "diagnoses", "exec"), namespace)
    return namespace["_scan"]


NOTEBOOK_SCAN = _notebook_scan()
_CASES = {**{f"flagged: {k}": (source, EX1_LOGPROBS) for k, (source, _, _) in FLAGGED.items()},
          **{f"reaches autograd: {k}": (v[0], EX1_LOGPROBS) for k, v in REACHES_AUTOGRAD.items()},
          **{f"clean: {k}": v for k, v in CLEAN.items()},
          **{f"reference answer: {k}": (v, units.BY_ID[k]) for k, v in assign.solution_cells().items()},
          "syntax error": ("x = 1\ny = = 2\n", EX1_LOGPROBS),
          "forbidden in ex2": ("dlogits = F.cross_entropy(logits, Yb)", EX2)}


@pytest.mark.parametrize("source, unit", _CASES.values(), ids=_CASES.keys())
def test_the_notebooks_inlined_scan_finds_what_the_grader_finds(source, unit):
    graders = scan(source, unit)
    notebooks = NOTEBOOK_SCAN.scan(strip_magics(source), NOTEBOOK_SCAN.RULES[unit.grade_id])
    as_tuple = (lambda finding: None if finding is None else (finding.kind, finding.message))
    assert as_tuple(notebooks) == as_tuple(graders)


def test_the_notebooks_rules_are_the_units_table():
    assert set(NOTEBOOK_SCAN.RULES) == set(units.BY_ID)
    for grade_id, unit in units.BY_ID.items():
        rules = NOTEBOOK_SCAN.RULES[grade_id]
        assert (rules.answer, rules.forbidden, rules.attributes, rules.modules) == (
            unit.answer, unit.forbidden, tuple(units.AUTOGRAD_ATTRIBUTES), tuple(units.AUTOGRAD_MODULES))
