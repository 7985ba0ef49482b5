"""A corpus of submissions with the verdict each one must get: mistakes, right answers written
differently, cheats and broken files.

Each submission is the release notebook filled with the reference solution, then changed: some
answer cells are overridden, or the whole file is damaged (`fault`). `expected` lists the units whose
verdict is not "ok"; every other unit must be "ok". For wrong answers, `Expect.words` are phrases
the message must contain, so a test can tell that the grader named the right mistake family.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

import nbformat

from backprop_ninja import units
from backprop_ninja.examples import filled
from dataclasses import replace

from backprop_ninja.grade.verdict import (ALLOWLIST_CODE, ANY_CODE, CRASHED, ERROR, MISSING, NOT_ALLOWED, OK, TIMEOUT,
                                          USES_AUTOGRAD, WRONG)


@dataclass(frozen=True)
class Expect:
    status: str
    words: tuple[str, ...] = ()  # each must occur in the verdict's message (case-insensitive)
    note: tuple[str, ...] = ()   # right by luck: each must occur in the verdict's note; none means no note at all


@dataclass(frozen=True)
class Submission:
    name: str
    kind: str                                           # mistake, alternative, cheat or fault
    answers: Mapping[str, str] = field(default_factory=dict)   # grade_id -> cell code, over the solution
    expected: Mapping[str, Expect] = field(default_factory=dict)
    fault: Callable[[dict], str] | None = None          # the filled notebook (JSON) -> the file's text
    file_error: str | None = None                       # words of SubmissionResult.error: not gradable
    code: str = ALLOWLIST_CODE                          # the code policy it is graded under

    def expected_status(self) -> dict[str, str]:
        if self.file_error is not None:
            return {u.grade_id: ERROR for u in units.UNITS}
        return {u.grade_id: self.expected.get(u.grade_id, Expect(OK)).status for u in units.UNITS}


def _solution(grade_id: str) -> str:
    from backprop_ninja.assign import solution_cells

    return solution_cells()[grade_id]


def wrong(*words: str) -> Expect:
    return Expect(WRONG, words)


def by_luck(*words: str) -> Expect:
    """Right by luck (grade/probe.py): ok with a note holding `words` by default; 0 points under --strict-rules."""
    return Expect(OK, ("by luck",), words)


# ---- notebook-level faults: each turns the filled notebook's JSON into the text of the file ----

def _dump(notebook: dict) -> str:
    return json.dumps(notebook, indent=1)


def delete_cell(grade_id: str) -> Callable[[dict], str]:
    def fault(notebook: dict) -> str:
        notebook["cells"] = [c for c in notebook["cells"]
                             if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") != grade_id]
        return _dump(notebook)
    return fault


def corrupt_json(notebook: dict) -> str:
    text = _dump(notebook)
    return text[: len(text) // 2]  # a save cut short


def duplicate_ids(notebook: dict) -> str:
    for cell in notebook["cells"]:
        cell["id"] = "cell"
    return _dump(notebook)


def python_script(notebook: dict) -> str:
    return "# exported with 'Download as .py'\ndlogprobs = None\n"


def empty_file(notebook: dict) -> str:
    return ""


def retype_to_markdown(grade_id: str) -> Callable[[dict], str]:
    def fault(notebook: dict) -> str:
        for cell in notebook["cells"]:
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
                cell["cell_type"] = "markdown"
                cell.pop("outputs", None)
                cell.pop("execution_count", None)
        return _dump(notebook)
    return fault


def blank_release(notebook: dict) -> str:
    raise AssertionError("handled by write_submission: the blank release is written as released")


# ---- cells used by several entries ----

HELPER_DEFINED = """
def unbroadcast(grad, like):
    '''Sum grad over the axes that `like` had broadcast to the shape of grad.'''
    while grad.dim() > like.dim():
        grad = grad.sum(0)
    for axis, size in enumerate(like.shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis, keepdim=True)
    return grad

dlogprobs = torch.zeros_like(logprobs)
dlogprobs[range(n), Yb] = -1.0 / n
"""
DYNAMIC_BACKWARD = """
x = h.detach().clone()
getattr(x, "requires_" + "grad_")()
loss_h = (x @ W2 * dlogits).sum()
getattr(loss_h, "".join(["back", "ward"]))()
dh = getattr(x, "gr" + "ad")
"""
IGNORE_SIGINT_LOOP = """
import signal
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
while True:
    pass
"""
EX2_HELPER = """
def softmax_minus_onehot(logits, Yb):
    return (F.softmax(logits, 1) - F.one_hot(Yb, num_classes=logits.shape[1])) / logits.shape[0]

dlogits = softmax_minus_onehot(logits, Yb)
"""
EX4_USES_HELPER = """
def manual_backward(parameters, cache):
    C, W1, b1, W2, b2, bngain, bnbias = parameters
    Xb, h, bnraw = cache["Xb"], cache["h"], cache["bnraw"]
    n = Xb.shape[0]
    dlogits = softmax_minus_onehot(cache["logits"], cache["Yb"])  # defined in the Exercise 2 cell
    dhpreact = (1.0 - h**2) * (dlogits @ W2.T)
    dhprebn = bngain * cache["bnvar_inv"] / n * (
        n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))
    demb = (dhprebn @ W1.T).view(cache["emb"].shape)
    dC = torch.zeros_like(C).index_add_(0, Xb.view(-1), demb.view(-1, C.shape[1]))
    return [dC, cache["embcat"].T @ dhprebn, dhprebn.sum(0), h.T @ dlogits, dlogits.sum(0),
            (bnraw * dhpreact).sum(0, keepdim=True), dhpreact.sum(0, keepdim=True)]
"""
EX4_W2_TRANSPOSED = EX4_USES_HELPER.replace("h.T @ dlogits", "dlogits.T @ h")


# ---- issue 9.1: no false fails ----
# Natural notebook habits that must not cost a point: calling the notebook's helpers in an answer cell, and
# helpers, imports and constants written in a cell the student added. Such a cell's definitions are replayed
# before the answers after it; its loops, prints and training are not (see backprop_ninja/grade/definitions.py).

def add_cells(*cells: tuple[str, str]) -> Callable[[dict], str]:
    """A fault that inserts code cells with no nbgrader metadata (cells the student added): (grade_id, source)
    puts the cell just before that unit's answer cell."""
    def fault(notebook: dict) -> str:
        for number, (grade_id, source) in enumerate(cells):
            index = next(i for i, c in enumerate(notebook["cells"])
                         if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)
            notebook["cells"].insert(index, {"cell_type": "code", "id": f"added-{number}", "metadata": {},
                                             "execution_count": None, "outputs": [], "source": source})
        return _dump(notebook)
    return fault


# the same helper as above, under another name, in a cell of its own
ADDED_HELPER = HELPER_DEFINED.split("\ndlogprobs")[0].replace("unbroadcast", "sum_like") + """
class Tanh:
    @staticmethod
    def local(out):
        return 1.0 - out**2

GAIN_AXIS = 0
"""
ADDED_IMPORTS = "import torch.nn.functional as Fn\nimport numpy as np\nfrom math import log as ln\n"
# If any of its top-level statements ran, the unit after it would die (os._exit), stop (SystemExit), time out
# (the endless loop) or be wrong (the replay's h and n replaced): so an ok proves that only definitions ran.
ADDED_TRAINING = """
import os
lr = 0.1
h = 1e-3                     # a step for finite differences: must not replace the replay's h
n = 32                       # must not replace the replay's n (17 and 50 on fresh replays)
max_steps = int(2e5)         # a call: not replayed
print("training for", max_steps, "steps")
def back_through_matmul(dout, W):
    return dout @ W.T
os._exit(3)
raise SystemExit("stop")
for step in range(max_steps):
    while True:
        pass
lossi = train(max_steps)
"""
# The lecture's own comparison helper: it reads autograd's .grad, but its result is only printed.
LECTURE_CMP = """
def cmp(s, dt, t):
    ex = torch.all(dt == t.grad).item()
    app = torch.allclose(dt, t.grad)
    maxdiff = (dt - t.grad).abs().max().item()
    print(f'{s:15s} | exact: {str(ex):5s} | approximate: {str(app):5s} | maxdiff: {maxdiff}')
"""
ADDED_AUTOGRAD = """
from torch import autograd as ag

def grad_of(t):
    loss.backward()
    return t.grad

def steal_db2():
    global db2
    db2 = b2.grad
"""

ISSUE_9_1: tuple[Submission, ...] = (
    Submission("alt_calls_notebook_helpers", "alternative", {
        "ex1_probs": "dprobs = (1.0 / probs) * dlogprobs\ncheck('probs')\nprogress()\nhint('probs')",
        "ex1_h": "dh = dlogits @ W2.T\nshow_graph('h')\ndisplay(dh.shape)\ncheck('h')",
        "ex2_logits": ("dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1\ndlogits /= n\n"
                       "plt.figure(figsize=(8, 8))\nplt.imshow(dlogits.detach(), cmap='gray')\ncheck('logits')"),
    }),
    Submission("alt_helper_in_added_cell", "alternative", {
        "ex1_counts_sum_inv": "dcounts_sum_inv = sum_like(counts * dprobs, counts_sum_inv)",
        "ex1_b2": "db2 = sum_like(dlogits, b2)",
        "ex1_hpreact": "dhpreact = Tanh.local(h) * dh",
        "ex1_bngain": "dbngain = (bnraw * dhpreact).sum(GAIN_AXIS, keepdim=True)",
        # Exercise 4 runs in a worker of its own: the added cell's definitions are replayed there too
        "ex4_backward": EX4_USES_HELPER.replace('softmax_minus_onehot(cache["logits"], cache["Yb"])',
                                                "(F.softmax(cache['logits'], 1) - F.one_hot(cache['Yb'], 27)) / n")
                                       .replace("dlogits.sum(0)", "sum_like(dlogits, b2)"),
    }, fault=add_cells(("ex1_counts_sum_inv", ADDED_HELPER))),
    Submission("alt_import_alias_in_added_cell", "alternative", {
        "ex1_logprobs": "dlogprobs = -Fn.one_hot(Yb, num_classes=vocab_size).float() / n",
        "ex1_counts_sum": "dcounts_sum = -counts_sum**-2 * dcounts_sum_inv * np.e ** ln(1.0)",
        "ex2_logits": "dlogits = (Fn.softmax(logits, 1) - Fn.one_hot(Yb, num_classes=vocab_size)) / n",
    }, fault=add_cells(("ex1_logprobs", ADDED_IMPORTS))),
    Submission("alt_training_cell_not_run", "alternative",
               {"ex1_h": "dh = back_through_matmul(dlogits, W2)"},
               fault=add_cells(("ex1_h", ADDED_TRAINING))),
    Submission("alt_lecture_cmp_in_added_cell", "alternative", {
        "ex1_logprobs": ("dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0 / n\n"
                         "cmp('logprobs', dlogprobs, logprobs)"),
        "ex1_probs": "dprobs = (1.0 / probs) * dlogprobs\ncmp('probs', dprobs, probs)",
    }, fault=add_cells(("ex1_logprobs", LECTURE_CMP))),
    Submission("cheat_autograd_in_added_cell", "cheat", {
        "ex1_h": "_, (dh,) = ag.functional.vjp(lambda t: t @ W2, h, dlogits)",  # `ag` from the added cell
        "ex1_W2": "dW2 = grad_of(W2)",
        "ex1_b2": "steal_db2()",  # a bare call of a flagged helper that sets db2 itself (`global db2`) is the answer
    }, {
        "ex1_h": Expect(USES_AUTOGRAD, ("torch.autograd",)),
        "ex1_W2": Expect(USES_AUTOGRAD, ("grad_of", "a cell you added", ".backward")),
        "ex1_b2": Expect(USES_AUTOGRAD, ("steal_db2", "a cell you added", ".grad")),
    }, fault=add_cells(("ex1_h", ADDED_AUTOGRAD))),
)


# ---- issue 15.7: messages that name what is really wrong ----
# Each message is held to its words in the grader (test_corpus.py) and in the notebook (test_diagnosis_agreement.py).
ISSUE_15_7: tuple[Submission, ...] = (
    # += through an index tensor writes each repeated row once, just as = does: the lesson is index_add_ or a loop
    Submission("C_plus_equals_through_an_index", "mistake",
               {"ex1_C": "dC = torch.zeros_like(C)\ndC[Xb] += demb"},
               {"ex1_C": wrong("appear more than once", "+= keeps only one copy per row, just as = does",
                               "index_add_", "a loop")}),
    # probs * dprobs is exactly dlogprobs (probs times 1/probs is 1): the values coincide with a gradient two lines
    # on, and the mistake is starting from dprobs instead of dcounts
    Submission("norm_logits_from_a_later_gradient", "mistake",
               {"ex1_norm_logits": "dnorm_logits = probs * dprobs"},
               {"ex1_norm_logits": wrong("equals the gradient of `logprobs`", "the values only coincide",
                                         "comes through `counts`", "start from dcounts")}),
    # Exercise 1 rebuilt from dbnraw: the share through bndiff2 (the variance) is lost, and it belongs to the branch
    # through bndiff; bnvar is not a line that uses hprebn
    Submission("hprebn_without_the_variance_share", "mistake",
               {"ex1_hprebn": ("dhprebn = bnvar_inv * dbnraw\n"
                               "dhprebn += (1.0 / n) * torch.ones_like(hprebn) * (-(bnvar_inv * dbnraw)).sum(0, "
                               "keepdim=True)")},
               {"ex1_hprebn": wrong("part of the branch through `bndiff` is missing",
                                    "`bnvar`, which does not use `hprebn` itself")}),
    # one row where the variable has n: the rule, not only the shapes
    Submission("bndiff2_left_as_a_row", "mistake",
               {"ex1_bndiff2": "dbndiff2 = (1.0 / (n - 1)) * dbnvar"},
               {"ex1_bndiff2": wrong("instead of (", "so its gradient has that shape too",
                                     "a sum in the forward pass is a broadcast in the backward pass",
                                     "along axis 0")}),
)


CORPUS: tuple[Submission, ...] = (
    # ---- Exercise 1: one typical mistake per unit ----
    Submission("logprobs_sign", "mistake",
               {"ex1_logprobs": "dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = 1.0 / n"},
               {"ex1_logprobs": wrong("sign")}),
    Submission("logprobs_no_mean", "mistake",
               {"ex1_logprobs": "dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0"},
               {"ex1_logprobs": wrong("factor n")}),
    Submission("probs_times_n", "mistake",
               {"ex1_probs": "dprobs = n * dlogprobs / probs"},
               {"ex1_probs": wrong("factor n")}),
    Submission("counts_sum_inv_keepdim_dropped", "mistake",
               {"ex1_counts_sum_inv": "dcounts_sum_inv = (counts * dprobs).sum(1)"},
               {"ex1_counts_sum_inv": wrong("keepdim")}),
    Submission("counts_sum_inv_wrong_axis", "mistake",
               {"ex1_counts_sum_inv": "dcounts_sum_inv = (counts * dprobs).sum(0, keepdim=True)"},
               {"ex1_counts_sum_inv": wrong("axis 1")}),
    Submission("counts_sum_sign", "mistake",
               {"ex1_counts_sum": "dcounts_sum = counts_sum**-2 * dcounts_sum_inv"},
               {"ex1_counts_sum": wrong("sign")}),
    Submission("counts_one_branch", "mistake",
               {"ex1_counts": "dcounts = counts_sum_inv * dprobs"},
               {"ex1_counts": wrong("branch", "counts_sum")}),
    Submission("norm_logits_sign", "mistake",
               {"ex1_norm_logits": "dnorm_logits = -counts * dcounts"},
               {"ex1_norm_logits": wrong("sign")}),
    Submission("logit_maxes_keepdim_dropped", "mistake",
               {"ex1_logit_maxes": "dlogit_maxes = (-dnorm_logits).sum(1)"},
               {"ex1_logit_maxes": wrong("keepdim")}),
    Submission("logits_only_max_branch", "mistake",
               {"ex1_logits": "dlogits = F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes"},
               {"ex1_logits": wrong("zero everywhere")}),
    Submission("h_transposed", "mistake",
               {"ex1_h": "dh = (dlogits @ W2.T).T"},
               {"ex1_h": wrong("transposed")}),
    Submission("W2_transposed", "mistake",
               {"ex1_W2": "dW2 = dlogits.T @ h"},
               {"ex1_W2": wrong("transposed")}),
    Submission("b2_no_sum", "mistake",
               {"ex1_b2": "db2 = dlogits"},
               {"ex1_b2": wrong("missing a sum over axis 0")}),
    Submission("hpreact_sign", "mistake",
               {"ex1_hpreact": "dhpreact = (h**2 - 1.0) * dh"},
               {"ex1_hpreact": wrong("sign")}),
    Submission("bngain_no_sum", "mistake",
               {"ex1_bngain": "dbngain = bnraw * dhpreact"},
               {"ex1_bngain": wrong("missing a sum over axis 0")}),
    Submission("bnbias_keepdim_dropped", "mistake",
               {"ex1_bnbias": "dbnbias = dhpreact.sum(0)"},
               {"ex1_bnbias": wrong("keepdim")}),
    Submission("bnraw_gain_twice", "mistake",
               {"ex1_bnraw": "dbnraw = 2 * bngain * dhpreact"},
               {"ex1_bnraw": wrong("factor 2")}),
    Submission("bnvar_inv_wrong_axis", "mistake",
               {"ex1_bnvar_inv": "dbnvar_inv = (bndiff * dbnraw).sum(1, keepdim=True)"},
               {"ex1_bnvar_inv": wrong("axis 0")}),
    Submission("bnvar_sign", "mistake",
               {"ex1_bnvar": "dbnvar = 0.5 * (bnvar + 1e-5) ** -1.5 * dbnvar_inv"},
               {"ex1_bnvar": wrong("sign")}),
    Submission("bndiff2_n_not_n_minus_1", "mistake",
               {"ex1_bndiff2": "dbndiff2 = (1.0 / n) * torch.ones_like(bndiff2) * dbnvar"},
               {"ex1_bndiff2": wrong("(n-1)/n", "Bessel")}),
    Submission("bndiff_one_branch", "mistake",
               {"ex1_bndiff": "dbndiff = bnvar_inv * dbnraw"},
               {"ex1_bndiff": wrong("branch", "bndiff2")}),
    Submission("bnmeani_sign", "mistake",
               {"ex1_bnmeani": "dbnmeani = dbndiff.sum(0, keepdim=True)"},
               {"ex1_bnmeani": wrong("sign")}),
    Submission("hprebn_one_branch", "mistake",
               {"ex1_hprebn": "dhprebn = dbndiff.clone()"},
               {"ex1_hprebn": wrong("branch", "bnmeani")}),
    Submission("hprebn_mean_branch_without_1_over_n", "mistake",
               {"ex1_hprebn": "dhprebn = dbndiff + torch.ones_like(hprebn) * dbnmeani"},
               {"ex1_hprebn": wrong("branch through `bnmeani`", "factor n")}),
    Submission("embcat_transposed", "mistake",
               {"ex1_embcat": "dembcat = W1 @ dhprebn.T"},
               {"ex1_embcat": wrong("transposed")}),
    Submission("W1_transposed", "mistake",
               {"ex1_W1": "dW1 = dhprebn.T @ embcat"},
               {"ex1_W1": wrong("transposed")}),
    Submission("b1_no_sum", "mistake",
               {"ex1_b1": "db1 = dhprebn"},
               {"ex1_b1": wrong("missing a sum over axis 0")}),
    Submission("emb_not_reshaped", "mistake",
               {"ex1_emb": "demb = dembcat"},
               {"ex1_emb": wrong("reshape")}),
    Submission("emb_wrong_view", "mistake",
               {"ex1_emb": "demb = dembcat.view(n, n_embd, block_size).transpose(1, 2)"},
               {"ex1_emb": wrong("values differ")}),
    Submission("C_assignment_without_accumulation", "mistake",
               {"ex1_C": "dC = torch.zeros_like(C)\ndC[Xb] = demb"},
               {"ex1_C": wrong("appear more than once", "+=")}),
    # ---- Exercises 2, 3 and 4 ----
    Submission("ex2_mean_forgotten", "mistake",
               {"ex2_logits": "dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1"},
               {"ex2_logits": wrong("factor n")}),
    Submission("ex2_sign", "mistake",
               {"ex2_logits": "dlogits = (F.one_hot(Yb, num_classes=27) - F.softmax(logits, 1)) / n"},
               {"ex2_logits": wrong("sign")}),
    Submission("ex3_bessel_dropped", "mistake",
               {"ex3_hprebn": "dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0)"
                              " - bnraw * (dhpreact * bnraw).sum(0))"},
               {"ex3_hprebn": wrong("n-1", "Bessel")}),
    Submission("ex3_no_gain", "mistake",
               {"ex3_hprebn": "dhprebn = 2 * bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0)"
                              " - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))"},
               {"ex3_hprebn": wrong("factor 2")}),
    Submission("ex4_W2_transposed", "mistake",
               {"ex2_logits": EX2_HELPER, "ex4_backward": EX4_W2_TRANSPOSED},
               {"ex4_backward": wrong("dW2", "transposed", "look at the line that computes dW2 itself")}),

    # ---- issue 9.5: where the mistake is ----
    Submission("ex4_bessel_dropped", "mistake",
               {"ex4_backward": _solution("ex4_backward").replace("n / (n - 1) * bnraw", "bnraw")},
               {"ex4_backward": wrong("dW2, db2, dbngain, dbnbias", "are right", "dW1", "dC",
                                      "between hpreact and hprebn (the batchnorm backward)")}),
    Submission("bndiff_given_dbnraw", "mistake",
               {"ex1_bndiff": "dbndiff = dbnraw.clone()"},
               {"ex1_bndiff": wrong("equals the gradient of `bnraw`")}),
    Submission("probs_forward_value_for_the_gradient", "mistake",
               {"ex1_probs": "dprobs = (1.0 / probs) * logprobs"},
               {"ex1_probs": wrong("forward value `logprobs` where its gradient `dlogprobs` belongs")}),
    Submission("ex2_minus_one_forgotten", "mistake",
               {"ex2_logits": "dlogits = F.softmax(logits, 1) / n"},
               {"ex2_logits": wrong("correct characters")}),

    # ---- issue 9.2/9.4: near-misses ----
    # Off by so little that the ordinary replays may pass them: the stress replay (a batchnorm column of tiny
    # variance, tied and large logits, run in float64 with a tolerance near float64 rounding) must fail them.
    # Which ordinary replays still pass depends on the grading's fresh seeds, so the words are those of
    # compare._near_miss, said either way.
    Submission("near_bnvar_without_eps", "mistake",
               {"ex1_bnvar": "dbnvar = -0.5 * bnvar**-1.5 * dbnvar_inv"},
               {"ex1_bnvar": wrong("nearly right", "stress replay", "variance is tiny", "epsilon")}),
    Submission("near_ex2_softmax_smoothed_inside_exp", "mistake",
               # +5e-3 inside the exp of the numerator only: probabilities 0.5 % too large
               {"ex2_logits": ("norm_logits = logits - logits.max(1, keepdim=True).values\n"
                               "dlogits = (norm_logits + 5e-3).exp() / norm_logits.exp().sum(1, keepdim=True)\n"
                               "dlogits[range(n), Yb] -= 1\n"
                               "dlogits /= n")},
               {"ex2_logits": wrong("nearly right", "float64", "inside an exp")}),
    Submission("near_ex3_eps_dropped", "mistake",
               {"ex3_hprebn": "var = hprebn.var(0, keepdim=True)\n"  # Exercise 3 is not given bnvar: its own
                              "dhprebn = bngain * var**-0.5 / n * (n * dhpreact - dhpreact.sum(0)"
                              " - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))"},
               {"ex3_hprebn": wrong("nearly right", "variance is tiny", "epsilon")}),
    # float32 habits on the float64 replay: right answers, never a near-miss
    Submission("alt_float32_habits", "alternative", {
        "ex1_logprobs": "dlogprobs = -F.one_hot(Yb, num_classes=vocab_size).float() / n",
        "ex1_W2": "dW2 = h.T.float() @ dlogits.float()",
        "ex1_h": "dh = dlogits @ W2.T.float()",  # float64 @ float32 raises on the float64 replay: left out there
        "ex2_logits": "dlogits = (F.softmax(logits, 1) - F.one_hot(Yb, 27).float()) / n",
    }),

    # ---- right answers in other forms: all ok ----
    Submission("alt_one_hot_scatter_index_add", "alternative", {
        "ex1_logprobs": "dlogprobs = -F.one_hot(Yb, num_classes=vocab_size).float() / n",
        "ex1_logits": ("dlogits = dnorm_logits.clone()\n"
                       "dlogits.scatter_add_(1, logits.argmax(1, keepdim=True), dlogit_maxes)"),
        "ex1_C": "dC = torch.zeros_like(C)\ndC.index_add_(0, Xb.flatten(), demb.reshape(-1, n_embd))",
        "ex2_logits": ("dlogits = F.softmax(logits, 1)\n"
                       "dlogits = dlogits.scatter_add(1, Yb.view(-1, 1), -torch.ones(n, 1))\n"
                       "dlogits /= n"),
    }),
    Submission("alt_scatter_and_index_put", "alternative", {
        "ex1_logprobs": "dlogprobs = torch.zeros_like(logprobs).scatter_(1, Yb.unsqueeze(1), -1.0 / n)",
        "ex1_C": ("dC = torch.zeros_like(C)\n"
                  "dC.index_put_((Xb.view(-1),), demb.view(-1, n_embd), accumulate=True)"),
    }),
    Submission("alt_broadcasting_and_expand", "alternative", {
        "ex1_counts": "dcounts = counts_sum_inv * dprobs + dcounts_sum",
        "ex1_bndiff2": "dbndiff2 = dbnvar.expand(n, -1) / (n - 1)",
        "ex1_hprebn": "dhprebn = dbndiff + dbnmeani / n",
        "ex1_emb": "demb = dembcat.view(-1, block_size, n_embd)",
        "ex1_W2": "dW2 = torch.einsum('ni,nj->ij', h, dlogits)",
    }),
    Submission("alt_powers_and_reciprocals", "alternative", {
        "ex1_probs": "dprobs = probs**-1 * dlogprobs",
        "ex1_counts_sum": "dcounts_sum = -1 / counts_sum**2 * dcounts_sum_inv",
        "ex1_bnvar": "dbnvar = -0.5 / (bnvar + 1e-5) ** 1.5 * dbnvar_inv",
        "ex1_hpreact": "dhpreact = (1 - torch.tanh(hpreact) ** 2) * dh",
    }),
    Submission("alt_two_cell_accumulation", "alternative", {
        # the lecture's style: a cell starts the next variable's gradient, a later cell adds to it
        "ex1_counts_sum_inv": ("dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)\n"
                               "dcounts = counts_sum_inv * dprobs"),
        "ex1_counts": "dcounts += torch.ones_like(counts) * dcounts_sum",
        "ex1_bnvar_inv": ("dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)\n"
                          "dbndiff = bnvar_inv * dbnraw"),
        "ex1_bndiff": "dbndiff += 2 * bndiff * dbndiff2",
        "ex1_bnmeani": "dbnmeani = -dbndiff.sum(0, keepdim=True)\ndhprebn = dbndiff.clone()",
        "ex1_hprebn": "dhprebn += torch.ones_like(hprebn) * dbnmeani / n",
    }),
    Submission("alt_helper_from_an_earlier_cell", "alternative", {
        "ex1_logprobs": HELPER_DEFINED,
        "ex1_counts_sum_inv": "dcounts_sum_inv = unbroadcast(counts * dprobs, counts_sum_inv)",
        "ex1_b2": "db2 = unbroadcast(dlogits, b2)",
        "ex1_bngain": "dbngain = unbroadcast(bnraw * dhpreact, bngain)",
        "ex1_bnbias": "dbnbias = unbroadcast(dhpreact, bnbias)",
        "ex1_b1": "db1 = unbroadcast(dhprebn, b1)",
        "ex2_logits": EX2_HELPER,
        "ex4_backward": EX4_USES_HELPER,
    }),
    Submission("alt_magics_and_prints", "alternative", {
        "ex1_h": "%matplotlib inline\n!echo shapes\ndh = dlogits @ W2.T\nprint(dh.shape)",
        "ex1_W1": "dW1 = embcat.T @ dhprebn\ndW1.shape",
    }),
    Submission("alt_answer_cell_retyped_to_markdown", "alternative", fault=retype_to_markdown("ex1_h")),
    Submission("alt_duplicate_cell_ids", "alternative", fault=duplicate_ids),
    *ISSUE_9_1,  # ---- issue 9.1: no false fails (defined above) ----

    # ---- issue 9.3: right by luck ----
    # Right on every replay only because a gradient is exactly 0: the rule probe (random upstreams for the unit's
    # consumers) tells them from right answers. Ok with a note by default, 0 points under --strict-rules.
    Submission("luck_logits_max_branch_left_out", "mistake",
               {"ex1_logits": "dlogits = dnorm_logits.clone()  # the max branch is ~0"},
               {"ex1_logits": by_luck("branch through logit_maxes is missing", "dlogit_maxes is exactly 0",
                                      "softmax ignores a shift")}),
    Submission("luck_logit_maxes_sign_flipped", "mistake",
               {"ex1_logit_maxes": "dlogit_maxes = dnorm_logits.sum(1, keepdim=True)"},
               {"ex1_logit_maxes": by_luck("sign of dlogit_maxes is flipped", "dlogit_maxes is exactly 0",
                                           "softmax ignores a shift")}),
    Submission("luck_logit_maxes_zeros", "mistake",
               {"ex1_logit_maxes": "dlogit_maxes = torch.zeros_like(logit_maxes)"},
               {"ex1_logit_maxes": by_luck("written as zeros", "dlogit_maxes is exactly 0", "softmax ignores a shift")}),
    Submission("luck_b1_zeros", "mistake",
               {"ex1_b1": "db1 = torch.zeros(64)"},
               {"ex1_b1": by_luck("written as zeros", "db1 is exactly 0", "batchnorm subtracts the column mean")}),
    # reads no upstream at all, and is right on the true one: a right answer, no note
    Submission("ex2_formula_as_ex1_dlogits", "alternative",
               {"ex1_logits": "dlogits = F.softmax(logits, 1)\ndlogits[range(n), Yb] -= 1\ndlogits /= n"}),

    # ---- cheats ----
    Submission("cheat_reads_grad", "cheat", {"ex1_W2": "dW2 = W2.grad"},
               {"ex1_W2": Expect(USES_AUTOGRAD, (".grad",))}),
    Submission("cheat_backward_in_cell", "cheat",
               {"ex1_bnraw": "hpreact.backward(torch.ones_like(hpreact))\ndbnraw = bnraw.grad"},
               {"ex1_bnraw": Expect(USES_AUTOGRAD, ("backward",))}),
    Submission("cheat_dynamic_backward", "cheat", {"ex1_h": DYNAMIC_BACKWARD},
               {"ex1_h": Expect(USES_AUTOGRAD, ("while grading",))}),
    Submission("cheat_torch_func", "cheat",
               {"ex1_embcat": "from torch.func import vjp\n_, pull = vjp(lambda e: e @ W1, embcat)\n"
                              "(dembcat,) = pull(dhprebn)"},
               {"ex1_embcat": Expect(USES_AUTOGRAD, ("torch.func",))}),
    Submission("cheat_cross_entropy_in_ex2", "cheat",
               {"ex2_logits": "dlogits = F.cross_entropy(logits, Yb)"},
               {"ex2_logits": Expect(USES_AUTOGRAD, ("cross_entropy",))}),
    Submission("cheat_patched_allclose", "cheat",
               {"ex1_probs": ("torch.allclose = lambda *args, **kwargs: True\n"
                              "torch.Tensor.allclose = lambda *args, **kwargs: True\n"
                              "dprobs = -dlogprobs / probs")},
               {"ex1_probs": wrong("sign")}),
    Submission("cheat_displayhook_and_numpy", "cheat",
               {"ex1_counts_sum": ("import sys\nimport numpy\n"
                                   "sys.displayhook = lambda value: None\n"
                                   "numpy.allclose = lambda *args, **kwargs: True\n"
                                   "dcounts_sum = counts_sum**-2 * dcounts_sum_inv")},
               {"ex1_counts_sum": wrong("sign")}),
    Submission("cheat_reads_names_file", "cheat",
               {"ex1_bnbias": ("words = open('names.txt').read().splitlines()\n"
                               "dbnbias = dhpreact.sum(0, keepdim=True)")},
               {"ex1_bnbias": Expect(ERROR, ("FileNotFoundError",))}),
    Submission("cheat_reads_the_notebook", "cheat",
               {"ex1_bnvar": ("import json\nnb = json.load(open('backprop_ninja.ipynb'))\n"
                              "dbnvar = (-0.5 * (bnvar + 1e-5) ** -1.5) * dbnvar_inv")},
               {"ex1_bnvar": Expect(ERROR, ("FileNotFoundError",))}),
    Submission("cheat_hard_coded_batch", "cheat",
               {"ex1_logprobs": "dlogprobs = torch.zeros_like(logprobs)\ndlogprobs[range(n), Yb] = -1.0 / 32",
                "ex1_emb": "demb = dembcat.view(32, 3, 10)"},
               {"ex1_logprobs": wrong("literal 32"), "ex1_emb": Expect(ERROR, ("hard-coded",))}),

    # ---- faults ----
    Submission("fault_infinite_loop", "fault", {"ex1_counts_sum": "while True:\n    pass"},
               {"ex1_counts_sum": Expect(TIMEOUT, ("endless loop",))}),
    Submission("fault_sigint_ignored_loop", "fault", {"ex1_bnmeani": IGNORE_SIGINT_LOOP},
               {"ex1_bnmeani": Expect(TIMEOUT, ("endless loop",))}),
    Submission("fault_huge_allocation", "fault",
               {"ex1_bngain": "big = torch.empty(50 * 2**30 // 4)\ndbngain = (bnraw * dhpreact).sum(0, keepdim=True)"},
               {"ex1_bngain": Expect(ERROR, ("memory",))}),
    Submission("fault_os_exit", "fault", {"ex1_norm_logits": "import os\nos._exit(0)"},
               {"ex1_norm_logits": Expect(CRASHED, ("died",))}),
    Submission("fault_sys_exit", "fault", {"ex1_b2": "import sys\nsys.exit('done')"},
               {"ex1_b2": Expect(ERROR, ("SystemExit",))}),
    Submission("fault_fork", "fault",  # student code may not start processes: fork fails, the cell raises
               {"ex1_hpreact": "import os\nos.fork()\ndhpreact = (1.0 - h**2) * dh"},
               {"ex1_hpreact": Expect(ERROR, ("PermissionError",))}),
    Submission("fault_syntax_error", "fault", {"ex1_b1": "db1 = dhprebn.sum(0"},
               {"ex1_b1": Expect(ERROR, ("does not parse",))}),
    Submission("fault_deleted_answer_cell", "fault", fault=delete_cell("ex1_W1"),
               expected={"ex1_W1": Expect(MISSING, ("no cell with grade_id ex1_W1",))}),
    Submission("fault_blank_release", "fault", fault=blank_release,
               expected={u.grade_id: Expect(MISSING, ("blank stub",)) for u in units.UNITS}),
    Submission("fault_corrupt_json", "fault", fault=corrupt_json, file_error="invalid JSON"),
    Submission("fault_not_a_notebook", "fault", fault=python_script, file_error="invalid JSON"),
    Submission("fault_empty_file", "fault", fault=empty_file, file_error="invalid JSON"),

    # ---- issue 14.7: right answers the rule probe cannot vary are no luck ----
    # They read a true gradient the probe keeps (dcounts, or a partial sum an earlier cell kept under a helper
    # name), so under random upstreams they are no combination of the shares: the probe says nothing.
    Submission("alt_dnorm_logits_recomputed_from_dcounts", "alternative", {
        "ex1_logits": ("dlogits = norm_logits.exp() * dcounts  # dnorm_logits again, from one step back\n"
                       "dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes"),
    }),
    Submission("alt_both_branches_recomputed_from_dcounts", "alternative", {
        "ex1_logits": ("dnorm = norm_logits.exp() * dcounts\n"
                       "dmax = -dnorm.sum(1, keepdim=True)\n"
                       "dlogits = dnorm + F.one_hot(logits.max(1).indices, num_classes=vocab_size) * dmax"),
    }),
    Submission("alt_partial_sums_from_the_previous_cell", "alternative", {
        "ex1_logit_maxes": "dlogit_maxes = -dnorm_logits.sum(1, keepdim=True)\ndlogits_1 = dnorm_logits.clone()",
        "ex1_logits": ("dlogits_2 = F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes\n"
                       "dlogits = dlogits_1 + dlogits_2"),
        "ex1_bndiff2": "dbndiff2 = 1.0 / (n - 1) * torch.ones_like(bndiff2) * dbnvar\ndbndiff_1 = bnvar_inv * dbnraw",
        "ex1_bndiff": "dbndiff_2 = 2 * bndiff * dbndiff2\ndbndiff = dbndiff_1 + dbndiff_2",
    }),

    # ---- issue 14.8: slips with a class of their own ----
    Submission("probs_plus_for_times", "mistake",
               {"ex1_probs": "dprobs = (1.0 / probs) + dlogprobs"},
               {"ex1_probs": wrong("+ written for *", "`dlogprobs`")}),
    Submission("C_started_from_ones", "mistake",
               {"ex1_C": "dC = torch.ones_like(C)\ndC.index_add_(0, Xb.view(-1), demb.view(-1, n_embd))"},
               {"ex1_C": wrong("one too large", "ones_like")}),
    Submission("bndiff2_forward_value_for_the_constant", "mistake",
               {"ex1_bndiff2": "dbndiff2 = bndiff * dbnvar"},
               {"ex1_bndiff2": wrong("a constant, the same in every row", "forward value")}),
    Submission("biases_keepdim_on_vectors", "mistake", {
        "ex1_b2": "db2 = dlogits.sum(0, keepdim=True)",
        "ex1_b1": "db1 = dhprebn.sum(0, keepdim=True)",
    }, {
        "ex1_b2": wrong("`b2` has shape (27,), a vector, so its gradient has that shape too",
                        "keepdim=True keeps a dimension that `b2` does not have"),
        "ex1_b1": wrong("`b1` has shape (64,), a vector", "keepdim=True keeps a dimension that `b1` does not have"),
    }),
    *ISSUE_15_7,  # ---- issue 15.7: messages that teach the real lesson (defined above) ----
)

# These cells test the second line, the sandbox and the run-time blocks, so they are graded with `--code any`; the
# allowlist (the first line, the default) refuses each of them before it runs: their twins "<name>_refused" say so,
# with the construct the message must name.
RUN_TIME_LAYER = {"cheat_dynamic_backward": "getattr", "cheat_patched_allclose": "changes `torch.allclose`",
                  "cheat_displayhook_and_numpy": "imports `sys`", "cheat_reads_names_file": "uses `open`",
                  "cheat_reads_the_notebook": "imports `json`", "fault_sigint_ignored_loop": "imports `signal`",
                  "fault_os_exit": "imports `os`", "fault_sys_exit": "imports `sys`", "fault_fork": "imports `os`"}


def _refused_twin(submission: Submission) -> Submission:
    words = RUN_TIME_LAYER[submission.name]
    return Submission(submission.name + "_refused", submission.kind, submission.answers,
                      {grade_id: Expect(NOT_ALLOWED, (words,)) for grade_id in submission.answers})


CORPUS = (tuple(replace(s, code=ANY_CODE) if s.name in RUN_TIME_LAYER else s for s in CORPUS)
          + tuple(_refused_twin(s) for s in CORPUS if s.name in RUN_TIME_LAYER))
if set(RUN_TIME_LAYER) - {s.name for s in CORPUS}:
    raise ValueError("tests/corpus.py: RUN_TIME_LAYER names a submission that is not in the corpus")

BY_NAME = {s.name: s for s in CORPUS}
if len(BY_NAME) != len(CORPUS):
    raise ValueError("tests/corpus.py: two submissions share a name")


def write_submission(submission: Submission, folder: Path, release: nbformat.NotebookNode,
                     solutions: Mapping[str, str]) -> Path:
    """The submission's notebook file in `folder` (named like the release, as a student hands it in)."""
    folder.mkdir(parents=True, exist_ok=True)
    # a neighbour a cell might try to read: the data file, as a student keeps it next to the notebook
    (folder / "names.txt").write_text("emma\nolivia\nava\n")
    path = folder / "backprop_ninja.ipynb"
    if submission.fault is blank_release:
        path.write_text(nbformat.writes(release))
        return path
    notebook = filled(release, {**solutions, **submission.answers})
    if submission.fault is None:
        path.write_text(nbformat.writes(notebook))
    else:
        path.write_text(submission.fault(copy.deepcopy(json.loads(nbformat.writes(notebook)))))
    return path
