"""The allowlist on every front end (issue 13, point 1): a blank release whose answer cells reach autograd, the
interpreter or the engine by routes a denylist of names cannot close earns nothing, through the CLI, the batch,
Gradescope's run_autograder and `nbgrader autograde`, under each front end's default code policy.

Each cell is one route from the issue, written as an attacker would. Under the default policy none of them runs:
each unit is `not_allowed` (or `uses_autograd`, where the autograd scan names the route first), with a message
naming the construct. A correct classmate in the same batch and course
keeps full marks.
"""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

import security_harness as h
from backprop_ninja import bundle, examples
from backprop_ninja.assign import ASSIGNMENT
from fixtures.correct_cells import CORRECT_CELLS
from nbgrader_course import course_env, hand_in, make_course, notebook_at, read_notebook, unit_scores
from notebooks import write_submission

pytestmark = pytest.mark.isolation  # graded through the real front ends, which require the sandbox

# grade_id -> (the attack, a word of the construct the message must name)
ATTACKS = {
    "ex1_logprobs": ("import threading\nbox = {}\n"
                     "def work():\n    leaf = torch.empty(logprobs.shape, **{'requires' + '_grad': True})\n"
                     "    box['x'] = leaf\n"
                     "t = threading.Thread(target=work)\nt.start()\nt.join()\ndlogprobs = box['x']",
                     "threading"),
    "ex1_probs": ("import ctypes\nlib = ctypes.CDLL('libc10.so')\ndprobs = dlogprobs / probs", "ctypes"),
    "ex1_counts_sum_inv": ("import sys\nVariable = sys.modules['torch.autograd.variable'].Variable\n"
                           "dcounts_sum_inv = Variable", "sys"),
    "ex1_counts_sum": ("node = loss.grad_fn.next_functions[0][0]\ndcounts_sum = node(torch.ones(()))[0]",
                       "grad_fn"),
    "ex1_counts": ("grad = torch.functional.operator.attrgetter('gr' + 'ad')\ndcounts = grad(counts)",
                   "torch.functional"),
    "ex1_norm_logits": ("with torch.inference_mode(False):\n    dnorm_logits = counts * dcounts",
                        "torch.inference_mode"),
    "ex1_logit_maxes": ("torch.ops.aten.set_grad_enabled(True)\n"
                        "dlogit_maxes = -dnorm_logits.sum(1, keepdim=True)", "torch.ops"),
    "ex1_logits": ("pool = torch.cuda.tunable.concurrent.futures.ThreadPoolExecutor(1)\n"
                   "dlogits = pool.submit(lambda: dnorm_logits.clone()).result()", "torch.cuda"),
    "ex1_h": ("cu = torch.jit.CompilationUnit('def f(x: torch.Tensor):\\n    return x')\ndh = cu.f(dlogits @ W2.T)",
              "torch.jit"),
    "ex1_W2": ("engine = [c for c in object.__subclasses__() if 'Engine' in c.__name__][0]\ndW2 = h.T @ dlogits",
               "object"),
    "ex1_b2": ("from torch._functorch import predispatch\ndb2 = dlogits.sum(0)", "_functorch"),
    "ex1_hpreact": ("base = torch.Tensor.mro()[1]\ndhpreact = (1.0 - h**2) * dh", "mro"),
    "ex1_bngain": ("match torch:\n    case object(ops=o):\n        dbngain = o\n", "match"),
    "ex1_bnbias": ("real_torch = F.torch\ndbnbias = real_torch.ops", "F.torch"),
    "ex1_bnraw": ("b = torch.builtins\ndbnraw = b.getattr(bngain, 'grad')", "torch.builtins"),
    "ex1_bnvar_inv": ("modules = torch.sys.modules\ndbnvar_inv = modules", "torch.sys"),
    "ex1_bnvar": ("dbnvar = getattr(bnvar, 'gr' + 'ad')", "getattr"),
    "ex1_bndiff2": ("w = torch.nn.modules.Linear(64, 64)\ndbndiff2 = w.weight", "torch.nn.modules"),
    "ex1_bndiff": ("T = torch\ndbndiff = T.ops.aten.ones_like(bndiff)", "module `torch` as a value"),
    "ex1_bnmeani": ("exec('import os')\ndbnmeani = dbndiff.sum(0, keepdim=True)", "exec"),
    "ex1_hprebn": ("frame = (lambda: (yield))().gi_frame\ndhprebn = frame", "gi_frame"),
    "ex1_embcat": ("dembcat = torch.empty(3, **{'requires' + '_grad': True})", "**"),
    "ex1_W1": ("class Grab(torch.Tensor):\n    pass\ndW1 = embcat.T @ dhprebn", "base class"),
    "ex1_b1": ("db1 = __builtins__", "__builtins__"),
    "ex1_emb": ("demb = dembcat.view(emb.shape)\nimport importlib", "importlib"),
    "ex1_C": ("dC = torch.zeros_like(C)\nv = vars(torch)", "vars"),
    "ex2_logits": ("lse = logits.exp().sum(1, keepdim=True).log()\nlogp = logits - lse\n"
                   "g = torch.ops.aten.nll_loss_backward(torch.tensor(1.0), logp, Yb, None, 1, -100, "
                   "torch.tensor(float(n)))\ndlogits = torch.ops.aten._log_softmax_backward_data(g, logp, 1, "
                   "logp.dtype)", "torch.ops"),
    "ex3_hprebn": ("dhprebn = torch.ops.aten.native_batch_norm_backward(dhpreact, hprebn, bngain, None, None, "
                   "None, None, True, 1e-5, [True, False, False])[0]", "torch.ops"),
    "ex4_backward": ("import torch.utils\ndef manual_backward(parameters, cache):\n"
                     "    return [p for p in parameters]", "torch.utils"),
}
ATTACKER, CLASSMATE = "mallory", "alice"


def assert_refused_everywhere(statuses: dict[str, str], messages: dict[str, str], score: float) -> None:
    assert score == 0, f"the attacker earned {score:g} points"
    # refused before it runs: by the allowlist, or by the autograd scan first where the route names autograd
    not_refused = {unit: statuses.get(unit) for unit in ATTACKS
                   if statuses.get(unit) not in ("not_allowed", "uses_autograd")}
    assert not not_refused, not_refused
    unnamed = {unit: messages[unit] for unit, (_, words) in ATTACKS.items() if words not in messages[unit]}
    assert not unnamed, unnamed


def from_results(results: dict) -> tuple[dict[str, str], dict[str, str], float]:
    statuses = {t["name"]: t["extra_data"]["status"] for t in results["tests"]}
    messages = {t["name"]: t["output"] for t in results["tests"]}
    return statuses, messages, results["score"]


def test_every_unit_gets_an_attack():
    from backprop_ninja import units

    assert set(ATTACKS) == {u.grade_id for u in units.UNITS}


def test_cli(workdir, names_file):
    base = workdir / "allowlist-cli"
    base.mkdir()
    notebook = write_submission(base / "attacker.ipynb", {k: v[0] for k, v in ATTACKS.items()})
    out = base / "out"
    run, leftovers = h.watched(h.grade_cli(notebook, "--out", out, code="allowlist"),
                               h.grader_env(base / "tmp", names_file), cwd=base, timeout=180)
    assert run.returncode == 0, run.log
    results = h.read_json(out / "results.json")
    assert results["extra_data"]["code"] == "allowlist"
    assert_refused_everywhere(*from_results(results))
    h.assert_nothing_left(run, leftovers)


def test_batch_default_policy_with_a_classmate(workdir, names_file):
    base = workdir / "allowlist-batch"
    folder, out = base / "class", base / "out"
    folder.mkdir(parents=True)
    write_submission(folder / f"{ATTACKER}.ipynb", {k: v[0] for k, v in ATTACKS.items()})
    write_submission(folder / f"{CLASSMATE}.ipynb", CORRECT_CELLS)
    args = [sys.executable, "-m", "backprop_ninja", "grade", str(folder), "--out", str(out), "--jobs", "2"]
    run, leftovers = h.watched(args, h.grader_env(base / "tmp", names_file), cwd=base, timeout=300)
    assert run.returncode in (0, 3), run.log
    rows = h.read_rows(out / "grades.csv")
    assert float(rows[CLASSMATE]["total"]) == h.MAX_SCORE
    assert float(rows[ATTACKER]["total"]) == 0
    assert rows[ATTACKER]["code"] == "allowlist"
    results = h.read_json(out / ATTACKER / "results.json")
    assert_refused_everywhere(*from_results(results))
    h.assert_nothing_left(run, leftovers)


def test_gradescope(workdir, names_file):
    root = workdir / "allowlist-autograder"
    archive = bundle.build_gradescope_zip(workdir / "allowlist-bundle")  # the default policy
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(root / "source")
        for info in zf.infolist():
            (root / "source" / info.filename).chmod(info.external_attr >> 16 & 0o777)
    (root / "submission").mkdir()
    write_submission(root / "submission" / "backprop_ninja.ipynb", {k: v[0] for k, v in ATTACKS.items()})
    env = h.grader_env(workdir / "allowlist-gradescope-tmp", names_file, AUTOGRADER_ROOT=str(root),
                       BACKPROP_NINJA_PYTHON=sys.executable)
    run, leftovers = h.watched([str(root / "source" / "run_autograder")], env, cwd=root, timeout=180)
    assert run.returncode == 0, run.log
    results = h.read_json(root / "results" / "results.json")
    assert results["extra_data"]["code"] == "allowlist"
    assert_refused_everywhere(*from_results(results))
    h.assert_nothing_left(run, leftovers)


def test_nbgrader(workdir, names_file):
    root = make_course(workdir / "allowlist-course", names_file)
    release = read_notebook(notebook_at(root, "release"))
    hand_in(root, CLASSMATE, examples.filled(release, CORRECT_CELLS))
    hand_in(root, ATTACKER, examples.filled(release, {k: v[0] for k, v in ATTACKS.items()}))
    env = h.grader_env(workdir / "allowlist-nbgrader-tmp", names_file, **course_env(names_file))
    run, leftovers = h.watched([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force"], env,
                               cwd=root, timeout=600)
    assert run.returncode == 0, run.log
    attacker = {unit: score.points for unit, score in unit_scores(root, ATTACKER).items()}
    classmate = {unit: score.points for unit, score in unit_scores(root, CLASSMATE).items()}
    assert set(attacker) == set(ATTACKS) and not any(attacker.values()), attacker
    assert classmate == h.UNIT_POINTS, classmate
    graded = read_notebook(notebook_at(root, "autograded", ATTACKER))
    text = nbformat_text(graded)
    assert "not_allowed" in text or "off limits" in text or "an answer may" in text
    h.assert_nothing_left(run, leftovers)


def nbformat_text(nb) -> str:
    return "\n".join(str(output.get("text", "")) + str(output.get("evalue", ""))
                     for cell in nb.cells for output in cell.get("outputs", []))
