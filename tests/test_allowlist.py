"""The allowlist (grade/allowlist.py): every route to autograd's numbers that issue 13 found is refused before it
runs, and what honest answers are made of is not.

The refusals are checked on the cell alone (fast, no torch run); test_security_allowlist.py and the corpus grade
whole notebooks through the front ends.
"""
from __future__ import annotations

import pytest

from backprop_ninja.assign import solution_cells
from backprop_ninja.grade import allowlist
from backprop_ninja.grade.canary import REFERENCE_CELLS
from mutation import all_mutants

# (cell, words the refusal must name). Each one got autograd's numbers, or the interpreter, with full points
# before the allowlist (issue 13, point 1), or is a close variant of one that did.
ROUTES = [
    ("import threading\nt = threading.Thread(target=print)\nt.start()", "imports `threading`"),
    ("x = torch.empty(3, **{'requires' + '_grad': True})", "`**`"),
    ("import sys\nengine = sys.modules['torch.autograd.variable']", "imports `sys`"),
    ("import ctypes\nctypes.CDLL('libc10.so')", "imports `ctypes`"),
    ("dlogits = torch.ops.aten.nll_loss_backward(g, logits, Yb, None, 1, -100, t)", "`torch.ops`"),
    ("dlogits = torch.ops.aten._log_softmax_backward_data(g, out, 1, torch.float32)", "`._log_softmax_backward_data`"),
    ("f = loss.grad_fn.next_functions[0][0]", "`.grad_fn`"),
    ("get = torch.functional.operator.attrgetter('grad')", "`torch.functional`"),
    ("with torch.inference_mode(False):\n    pass", "`torch.inference_mode`"),
    ("torch.ops.aten.set_grad_enabled(True)", "`torch.ops`"),
    ("torch.ops.aten.requires_grad_(x)", "`torch.ops`"),
    ("pool = torch.cuda.tunable.concurrent.futures.ThreadPoolExecutor()", "`torch.cuda`"),
    ("cu = torch.jit.CompilationUnit('def f(x):\\n    return x')", "`torch.jit`"),
    ("engine = [c for c in object.__subclasses__() if 'Engine' in c.__name__]", "`object`"),
    ("engine = ().__class__.__base__.__subclasses__()", "`.__class__`"),
    ("from torch._functorch import predispatch", "imports `torch._functorch.predispatch`"),
    ("r = torch.Tensor.mro()[1].requires_grad_", "`.mro`"),
    ("dh = torch.ops.aten.native_batch_norm_backward(dhpreact, hprebn, bngain)", "`torch.ops`"),
    ("dW = torch.nn.grad.conv1d_weight(x, w.shape, g)", "`torch.nn.grad`"),
    ("match torch:\n    case object(ops=o):\n        pass", "`match`"),
    ("t = F.torch", "`F.torch`"),
    ("b = torch.builtins", "`torch.builtins`"),
    ("m = torch.sys.modules", "`torch.sys`"),
    ("u = torch.utils", "`torch.utils`"),
    ("p = torch.nn.Parameter(W1)", "`torch.nn.Parameter`"),
    ("lin = torch.nn.Linear(3, 4)", "`torch.nn.Linear`"),
    ("T = torch\nops = T.ops", "module `torch` as a value"),
    ("modules = [torch, F]", "module `torch` as a value"),
    ("def f(m=torch):\n    return m", "module `torch` as a value"),
    ("nn = torch.nn\n", "module `torch.nn` as a value"),
    ("o = getattr(torch, 'o' + 'ps')", "`getattr`"),
    ("o = vars(torch)['ops']", "`vars`"),
    ("exec('import os')", "`exec`"),
    ("e = eval('1')", "`eval`"),
    ("b = __builtins__", "`__builtins__`"),
    ("os = __import__('os')", "`__import__`"),
    ("import importlib", "imports `importlib`"),
    ("from os import system", "imports `os.system`"),
    ("from . import worker", "imports `worker` from `.`"),
    ("g = (lambda: (yield))()\nframe = g.gi_frame", "`.gi_frame`"),
    ("class Sneaky(torch.Tensor):\n    pass", "base class"),
    ("class Meta(metaclass=type):\n    pass", "base class or metaclass"),
    ("k = type(h)", "`type`"),
    ("s = super()", "`super`"),
    ("d = dir(torch)", "`dir`"),
    ("breakpoint()", "`breakpoint`"),
    ("g = globals()", "`globals`"),
    ("with open('/etc/passwd') as f:\n    pass", "`open`"),
    ("x = h.untyped_storage()", "`.untyped_storage`"),
    ("h.register_hook(print)", "`.register_hook`"),
    ("with torch.enable_grad():\n    pass", "`torch.enable_grad`"),
    ("torch.set_grad_enabled(True)", "`torch.set_grad_enabled`"),
    ("f = torch.compile(lambda x: x)", "`torch.compile`"),
    ("v = torch.vmap(lambda x: x)", "`torch.vmap`"),
    ("import numpy as np\nlib = np.ctypeslib", "`np.ctypeslib`"),
    ("_secret = 1", "name `_secret`"),
    ("torch.exp = torch.log", "changes `torch.exp`"),
    ("torch.Tensor.sum = None", "changes `torch.Tensor.sum`"),
    ("async def f():\n    pass", "`async def`"),
    ("try:\n    pass\nexcept Exception as e:\n    tb = e.__traceback__", "`.__traceback__`"),
    ("x = h.data_ptr()", "`.data_ptr`"),
    ("import torch.autograd.forward_ad as fwAD", "imports `torch.autograd.forward_ad`"),
    ("w = torch.Tensor._make_subclass", "`._make_subclass`"),
]

# What honest answers are made of: each must pass (issue 13: print, no_grad, the helpers, natural patterns).
NATURAL = [
    "dC = torch.zeros_like(C)\nfor k in range(Xb.shape[0]):\n    for j in range(Xb.shape[1]):\n"
    "        ix = Xb[k, j]\n        dC[ix] += demb[k, j]",
    "dC = torch.zeros_like(C)\ndC.index_add_(0, Xb.view(-1), demb.view(-1, 10))",
    "dC = torch.zeros((27, 10))\ndC.index_put_((Xb.view(-1),), demb.view(-1, 10), accumulate=True)",
    "dlogprobs = -F.one_hot(Yb, num_classes=27).float() / n",
    "dlogits = (F.softmax(logits, 1) - F.one_hot(Yb, 27)) / n",
    "dlogits = (F.log_softmax(logits, 1).exp() - F.one_hot(Yb, 27)) / n",
    "dh = torch.einsum('nk,jk->nj', dlogits, W2)",
    "dh = dlogits @ W2.T\nprint(dh.shape, dh[:2])",
    "with torch.no_grad():\n    dh = dlogits @ W2.T",
    "dprobs = (1.0 / probs) * dlogprobs\ncheck('probs')\nprogress()\nhint('probs')\nshow_graph('probs')",
    "def unbroadcast(g, like):\n    while g.dim() > like.dim():\n        g = g.sum(0)\n"
    "    return g.sum(0, keepdim=True) if like.shape[0] == 1 else g\ndb2 = unbroadcast(dlogits, b2)",
    "import math\nimport numpy as np\nimport torch.nn.functional as Fn\nfrom math import log as ln\n"
    "x = np.e ** ln(1.0) * math.sqrt(4) * Fn.softmax(logits, 1)",
    "from torch.nn.functional import one_hot\ndlogprobs = -one_hot(Yb, 27).float() / n",
    "import matplotlib.pyplot as plt\nplt.figure(figsize=(4, 4))\nplt.imshow(dlogits.detach(), cmap='gray')",
    "class Tanh:\n    def __init__(self, out):\n        self.out = out\n    def local(self):\n"
    "        return 1.0 - self.out**2\ndhpreact = Tanh(h).local() * dh",
    "dbnvar = (-0.5 * (bnvar + 1e-5) ** -1.5 * dbnvar_inv)\nassert dbnvar.shape == bnvar.shape, 'shape'",
    "def manual_backward(parameters: list[torch.Tensor], cache: dict) -> list:\n"
    "    C, W1, b1, W2, b2, bngain, bnbias = parameters\n    h = cache['h']\n    return [x for x in parameters]",
    "for _ in range(2):\n    pass\nvalues, idx = logits.max(1, keepdim=True)\nd = F.one_hot(idx.view(-1), 27)",
    "dlogit_maxes = -dnorm_logits.sum(1, keepdim=True)\ndlogits = dnorm_logits.clone()\n"
    "dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes",
    "eps = torch.finfo(torch.float32).eps\nx = torch.tensor(1.0, dtype=torch.float64).item() + eps",
    "try:\n    dh = dlogits @ W2.T\nexcept RuntimeError as error:\n    print(error)\n    raise",
    "@torch.no_grad()\ndef f(x):\n    return x * 2\ndh = f(dlogits @ W2.T)",
    "dh = sum([dlogits @ W2.T for _ in range(1)])\ndh = dh if isinstance(dh, torch.Tensor) else None",
]


@pytest.mark.parametrize("cell, words", ROUTES, ids=[r[1] + f" #{i}" for i, r in enumerate(ROUTES)])
def test_every_route_is_refused_naming_the_construct(cell, words):
    refusal = allowlist.check(cell)
    assert refusal is not None, f"allowed: {cell!r}"
    assert words in refusal.message, refusal.message
    assert refusal.message.startswith("line "), refusal.message


@pytest.mark.parametrize("cell", NATURAL, ids=range(len(NATURAL)))
def test_what_honest_answers_are_made_of_is_allowed(cell):
    assert allowlist.check(cell) is None, allowlist.check(cell).message


def test_the_reference_answers_and_every_mutant_pass():
    """The solution source, the canary's cells and every mutant of tests/mutation.py (wrong, but honest) pass:
    the allowlist costs no honest answer its verdict."""
    solutions = solution_cells()
    cells = list(solutions.values()) + list(REFERENCE_CELLS.values())
    cells += [m.source for m in all_mutants(solutions)]
    refused = [(cell, allowlist.check(cell).message) for cell in cells if allowlist.check(cell) is not None]
    assert not refused, refused[:3]
    assert len(cells) > 100


def test_aliases_and_classes_from_other_cells_count():
    """An alias imported, or a class defined, in a cell the student added is known when an answer uses it."""
    added = "import numpy as np\nclass Tanh:\n    @staticmethod\n    def local(out):\n        return 1 - out**2\n"
    context = allowlist.Context.of([added])
    assert allowlist.check("x = np.sum(h.numpy())\ndh = Tanh.local(h)", context) is None
    assert "`.local`" in allowlist.check("dh = Tanh.local(h)").message  # without the added cell it is unknown
    assert "`np.ctypeslib`" in allowlist.check("x = np.ctypeslib", context).message


def test_a_student_class_cannot_own_an_introspection_or_autograd_attribute():
    cell = "class Box:\n    def __init__(self):\n        self.gi_frame = 1\n        self.grad = 2\nb = Box()\nf = b.gi_frame"
    assert "`.gi_frame`" in allowlist.check(cell).message
    assert "`.grad`" in allowlist.check("class V:\n    def f(self):\n        self.grad = 0\ny = x.grad").message


def test_every_listed_torch_member_exists_in_the_installed_torch():
    """The lists are checked against the real modules, so a name that is gone (or misspelt) is not silently
    allowed or mistaken for a module."""
    import types

    import torch

    for path in ("torch", "torch.nn.functional", "torch.linalg", "torch.special"):
        module = {"torch": torch, "torch.nn.functional": torch.nn.functional, "torch.linalg": torch.linalg,
                  "torch.special": torch.special}[path]
        for name in allowlist.NAMESPACES[path]:
            member = getattr(module, name)
            is_namespace = f"{path}.{name}" in allowlist.NAMESPACES
            assert isinstance(member, types.ModuleType) == is_namespace, (path, name)


def test_checking_never_raises():
    deep = "x = " + "(" * 150 + "1" + ")" * 150
    assert allowlist.check(deep) is None
    assert allowlist.check("def f(:\n") is None  # a syntax error is the caller's to report
    # thousands of nested operators: Python cannot parse it, so the caller's syntax check reports it
    assert allowlist.check("x = " + "-" * 5000 + "1") is None
    assert allowlist.check("x = " + "-" * 90 + "h.grad").message.startswith("line 1 reads `.grad`")


def test_a_check_reads_one_parse_even_when_the_parses_are_forgotten_meanwhile(monkeypatch):
    # A cold grading's canary runs in a thread of its own, and each grading starts with syntax.forget(): a check
    # that paired one parse's nodes with another parse's parents saw every attribute of a chain (`torch.ones_like`)
    # as a chain of its own, and refused honest answers ("uses the module `torch` as a value"). Here every lookup
    # parses afresh, as if the other thread forgot the cache between any two of them.
    from backprop_ninja.grade import syntax

    sources = list(REFERENCE_CELLS.values()) + ["demb = torch.nn.functional.one_hot(Xb, 27).float().sum(0)"]
    monkeypatch.setattr(syntax, "cell", syntax.Cell)
    assert [allowlist.check(source) for source in sources] == [None] * len(sources)
