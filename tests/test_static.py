"""The static scan flags every way to ask autograd (or a library function) and nothing else."""
from __future__ import annotations

import pytest

from backprop_ninja import units
from backprop_ninja.grade.static import scan

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
    ("import torch.nn.functional as F\nl = F.log_softmax(logits, 1)", EX2, "log_softmax"),
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
