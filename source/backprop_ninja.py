# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false}
# # Backprop Ninja: backpropagation by hand
#
# You will write the backward pass of a small character-level language model (the makemore MLP with batch
# normalisation) by hand, without `loss.backward()`. **Exercise 1**: the forward pass below is
# cut into 20 small steps; walk back from the loss and write the gradient of every intermediate and every parameter,
# 26 gradients in all. **Exercise 2**: the cross-entropy's gradient in one go. **Exercise 3**: the batchnorm
# layer's gradient in one go. **Exercise 4**: train the network with your own backward pass, and sample names.
#
# **What to do.** Run the whole notebook ("Run All"): it stops, as expected, at the first answer cell of Exercise 1.
# Write your code only in the cells that say `# YOUR CODE HERE` (in place of `raise NotImplementedError()`), run it,
# then the check cell below it, which compares your gradient with autograd's, prints `exact`, `approximate` and the
# largest difference, and names the likely mistake. Work top to bottom; `hint("probs")` helps one step at a time.
#
# **How you are graded.** Each gradient is a unit of its own. The grader re-runs every answer cell on fresh inputs
# and other batch sizes, with the *correct* gradients before it, so one mistake costs one unit; use `n`, never 32.
# Autograd's answer (`.grad`, `.backward()`) earns nothing. An answer cell may hold what a gradient needs (tensor
# arithmetic and indexing, functions of `torch`, `F`, `math` and `numpy`, loops, your own functions, `print`,
# `torch.no_grad()`); the grader refuses the rest (another module such as `os`, `getattr`, `torch.ops`, names
# starting with `_`) and says what.

# %% [markdown] nbgrader={"grade": false, "grade_id": "setup_md", "locked": true, "schema_version": 3, "solution": false}
# ## Setup: the data, the helpers and the network
#
# Collapsed; the arrow beside the title opens it. It needs `torch`, `matplotlib`, `tqdm` and `names.txt`.

# %% nbgrader={"grade": false, "grade_id": "imports", "locked": true, "schema_version": 3, "solution": false}
import hashlib
import os
import random
import urllib.request

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

try:  # in Jupyter, tqdm.auto draws its progress bar with ipywidgets; without them, plain text is just as good
    import ipywidgets  # noqa: F401
    from tqdm.auto import tqdm
except ImportError:
    from tqdm import tqdm

# %% [markdown] nbgrader={"grade": false, "grade_id": "data_md", "locked": true, "schema_version": 3, "solution": false}
# ### The data
#
# `names.txt` holds 32,033 first names, one per line (from Andrej Karpathy's makemore, MIT licence). The cell looks
# for it in the working folder (`os.getcwd()`, which is `/content` on Colab), then at the path in the environment
# variable `BACKPROP_NINJA_NAMES`, and otherwise downloads it into the working folder. Either way it checks the
# file's SHA-256, so you know you train on the same data as everyone else.

# %% nbgrader={"grade": false, "grade_id": "data", "locked": true, "schema_version": 3, "solution": false}
NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
NAMES_SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"


def fetch_names(path="names.txt"):
    """Return the verified contents of names.txt, downloading it to `path` if needed."""
    from_env = os.environ.get("BACKPROP_NINJA_NAMES", "")
    found = next((p for p in [path, from_env] if p and os.path.isfile(p)), None)
    if found:
        data = open(found, "rb").read()
        where = found
    else:
        try:
            data = urllib.request.urlopen(NAMES_URL, timeout=30).read()
        except OSError as err:
            env_note = (f"BACKPROP_NINJA_NAMES is set to {from_env!r}, which is not a file" if from_env
                        else "the environment variable BACKPROP_NINJA_NAMES is not set")
            raise RuntimeError(f"{path} is not in the working folder ({os.getcwd()}; /content on Colab), "
                               f"{env_note}, and downloading it from {NAMES_URL} failed ({err}). Download it by "
                               f"hand from that address and put it in the working folder, or set "
                               f"BACKPROP_NINJA_NAMES to its path; then run this cell again.") from None
        where = NAMES_URL
    if hashlib.sha256(data).hexdigest() != NAMES_SHA256:
        raise RuntimeError(f"{where} is not the expected names.txt (its SHA-256 differs). Delete it and run this "
                           f"cell again to download a fresh copy from {NAMES_URL}.")
    if not found:  # keep the download for next time; write-then-rename leaves no half-written file
        with open(path + ".partial", "wb") as f:
            f.write(data)
        os.replace(path + ".partial", path)
    return data.decode("utf-8")


words = fetch_names().splitlines()
print(len(words), "names, e.g.", words[:5])

# %% [markdown] nbgrader={"grade": false, "grade_id": "vocab_md", "locked": true, "schema_version": 3, "solution": false}
# The vocabulary is the 26 letters plus `.`, which marks both the start and the end of a name and has index 0.
# Each training example is a context of `block_size = 3` characters and the character that follows it.
# The names are shuffled with `random.seed(42)` and split 80/10/10 into train, validation and test sets.

# %% nbgrader={"grade": false, "grade_id": "vocab", "locked": true, "schema_version": 3, "solution": false}
chars = sorted(set("".join(words)))
stoi = {ch: i + 1 for i, ch in enumerate(chars)}
stoi["."] = 0
itos = {i: ch for ch, i in stoi.items()}
vocab_size = len(itos)
block_size = 3


def build_dataset(words):
    X, Y = [], []
    for w in words:
        context = [0] * block_size
        for ch in w + ".":
            ix = stoi[ch]
            X.append(context)
            Y.append(ix)
            context = context[1:] + [ix]
    return torch.tensor(X), torch.tensor(Y)


random.seed(42)
random.shuffle(words)
n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
Xtr, Ytr = build_dataset(words[:n1])
Xdev, Ydev = build_dataset(words[n1:n2])
Xte, Yte = build_dataset(words[n2:])
print("vocabulary:", vocab_size, "| train", tuple(Xtr.shape), "| val", tuple(Xdev.shape), "| test", tuple(Xte.shape))

# %% [markdown] nbgrader={"grade": false, "grade_id": "helpers_md", "locked": true, "schema_version": 3, "solution": false}
# ### Three helpers
#
# `check("probs")` grades your `dprobs` as the grader will and prints one line. It compares it with autograd's
# `probs.grad` on this batch, then re-runs the cell that set `dprobs` on fresh batches (one of another size) and on
# a float64 batch, as the grader does: a literal 32 where `n` belongs, a left-out `1e-5` or numbers copied from this
# batch show here, not only in your points. (It knows that cell because the notebook notes every cell you run: run
# your answer cell, then its check.) If the grader would not give full points, `check` stops with a one-line message
# (nbgrader's Validate button stops on the same ones) naming the likely mistake the way the grader does: a shape
# problem (a dropped `keepdim`, a transpose, a broadcast not summed), a sign, a factor such as $n$ or
# $\frac{n}{n-1}$, a missing branch of a variable used twice, or where the values are off. It also says when your
# cell raised, when the answer was computed before you last re-ran the forward pass (and which cells to re-run), and
# when only an earlier gradient this one builds on is off. `approximate: True` is what counts; `exact` only says
# whether every bit agrees. If your answer comes from autograd (`probs.grad`, a view or a copy of it), `check` says
# so: the point is to derive it by hand. An answer that is right only because a gradient it leaves out happens to be
# 0 on this batch passes with a note, as it does with the grader.
#
# Exercises 2 and 3 have checks of their own, `check("ex2")` and `check("ex3")`: each grades the answer written in its
# exercise's cell, never the `dlogits` or `dhprebn` left over from Exercise 1. `progress()` prints where you stand on
# every gradient and never stops anything.
#
# `finite_difference(f, x)` estimates the gradient of a scalar function numerically, by nudging each entry of `x` up
# and down a little: $\frac{f(x+\epsilon) - f(x-\epsilon)}{2\epsilon}$. Use it on a tiny example whenever you are
# unsure of a local derivative.

# %% nbgrader={"grade": false, "grade_id": "helpers", "locked": true, "schema_version": 3, "solution": false}
# nbgrader sets NBGRADER_EXECUTION to "autograde" while it grades and to "validate" when you press Validate.
# Only while grading do the checks just print (the grader decides the points); under Validate they stop like here.
GRADING = os.environ.get("NBGRADER_EXECUTION") == "autograde"
UNDER_NBGRADER = bool(os.environ.get("NBGRADER_EXECUTION"))  # autograde or validate: short training, no pictures
VALIDATE_WIDTH = 90  # characters of a line that Validate's dialog shows whole

EX1_VARIABLES = [
    "logprobs", "probs", "counts_sum_inv", "counts_sum", "counts", "norm_logits", "logit_maxes", "logits", "h",
    "W2", "b2", "hpreact", "bngain", "bnbias", "bnraw", "bnvar_inv", "bnvar", "bndiff2", "bndiff", "bnmeani",
    "hprebn", "embcat", "W1", "b1", "emb", "C",
]


class CheckFailed(AssertionError):
    """A check that did not pass. Jupyter shows only its one-line message, not a traceback into the helpers."""

    def _render_traceback_(self):
        line = f"{type(self).__name__}: {self}"
        # nbgrader's Validate shows these lines in a box that does not wrap them: there, they come wrapped
        return textwrap.wrap(line, VALIDATE_WIDTH) if UNDER_NBGRADER else [line]


def _unanswered_cell(shell, etype, value, tb, tb_offset=None):
    """Jupyter's message for the `raise NotImplementedError()` left in a cell you have not answered yet."""
    if value.args:  # a NotImplementedError with a message of its own: show it as usual
        return shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
    shell._showtraceback(etype, value, [
        "NotImplementedError: this cell is not answered yet. Replace the line `raise NotImplementedError()` "
        "with your code, run the cell, and then run the cells after it."])


try:
    get_ipython().set_custom_exc((NotImplementedError,), _unanswered_cell)  # noqa: F821 (defined in Jupyter)
except NameError:  # not in Jupyter: a plain traceback is fine
    pass


def _autograds_own(answer):
    """The name of the tensor whose autograd gradient `answer` is (or is a view of), else None."""
    storage = answer.untyped_storage().data_ptr()
    for name in list(globals()):
        tensor = globals()[name]
        live = tensor.grad if isinstance(tensor, torch.Tensor) and (tensor.is_leaf or tensor.retains_grad) else None
        for grad in (_grad(name), live):  # the kept reference, and .grad as it is now
            if grad is not None and (answer is grad or storage == grad.untyped_storage().data_ptr()):
                return name
    return None


# What check() knows of your session: in Jupyter, every cell you run that sets a gradient is noted here (its code,
# which forward pass was current, and the error it raised, if any), so check() can re-run your answer on fresh
# batches, as the grader does. Outside Jupyter there is no such record, and check() compares what is defined.
import ast
import contextlib
import inspect
import io
import re
import textwrap
import types

_CELLS = globals().get("_CELLS", [])  # kept when this cell runs again
_running = {"info": None}  # the cell running now, as IPython announced it
_reference = globals().get("_reference", {})  # name -> (its tensor, autograd's gradient), from autograd_reference()
_forward_pass_count = globals().get("_forward_pass_count", 0)  # counted by autograd_reference() (forward cell)
ANSWER_CELL_IDS = {"ex2": "ex2_logits", "ex3": "ex3_hprebn"}  # the answer cells of Exercises 2 and 3
EXERCISE_VARIABLE = {"ex2": "logits", "ex3": "hprebn"}


def _one_line(error):
    text = f"{type(error).__name__}: {error}".splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 120 else text[:117] + "..."


def _targets(node):
    """(plain, changed): the names a target binds, and the names whose tensor it changes (x[...] = , x.y = )."""
    if isinstance(node, ast.Name):
        return {node.id}, set()
    if isinstance(node, (ast.Tuple, ast.List, ast.Starred)):
        parts = [_targets(e) for e in (node.elts if not isinstance(node, ast.Starred) else [node.value])]
        return set().union(*(p for p, _ in parts)), set().union(*(c for _, c in parts))
    while isinstance(node, (ast.Subscript, ast.Attribute)):
        node = node.value
    return set(), ({node.id} if isinstance(node, ast.Name) else set())


def _assigned(source):
    """(plain, touched): the names a cell binds with a plain `=`, and every name it binds or changes."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # still an answer cell: its check names the error
        found = re.findall(r"^\s*(?:def\s+(manual_backward)\b|(d\w+)\s*[-+*/@]?=(?!=))", source, re.MULTILINE)
        names = {name for pair in found for name in pair if name}
        return names, names
    plain, touched = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign, ast.For)):
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                bound, changed = _targets(target)
                plain |= bound
                touched |= bound | changed
        elif isinstance(node, ast.AugAssign):
            touched |= set().union(*_targets(node.target))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            plain.add(node.name)
            touched.add(node.name)
    return plain, touched


def _autograd_use(cells, name, exercise):
    """What the grader's static scan (_scan, from the diagnoses cell) finds in the cells that made d<name>, in its
    words ("line 1 reads `.grad`: ..."), or None. A syntax finding is left out: such a cell raised when it ran."""
    rules = _scan.RULES.get(f"{exercise or 'ex1'}_{name}")
    for index, cell in enumerate(cells if rules else []):
        finding = _scan.scan(cell["source"], rules, aliases=_aliases_in_session(cell["source"], rules))
        if finding is not None and finding.kind == "autograd":
            return finding.message if index == len(cells) - 1 else f"in an earlier cell that sets it, {finding.message}"
    return None


def _aliases_in_session(source, rules):
    """The names the cell reads that an earlier cell bound to autograd's modules or functions, as the grader's scan
    reads the imports of cells you added (`from torch import autograd as ag`: `ag` is torch.autograd)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return {}
    aliases = {}
    for node in ast.walk(tree):
        value = globals().get(node.id) if isinstance(node, ast.Name) else None
        if isinstance(value, types.ModuleType):
            aliases[node.id] = value.__name__
        elif isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)) \
                and str(getattr(value, "__module__", None)).startswith("torch"):
            aliases[node.id] = f"{value.__module__}.{getattr(value, '__name__', node.id)}"
    return {name: target for name, target in aliases.items()
            if _scan._forbidden_module(target, rules) or _scan._parameter_class(target)}


def _note_cell(info):
    """IPython calls this before every cell: note the cells that set a gradient or manual_backward (before they
    run, so that a check() inside the answer cell finds it)."""
    _running["info"] = info
    try:
        source = _one_go.strip_magics(info.raw_cell)  # as the grader reads it (from the diagnoses cell below)
        plain, touched = _assigned(source)
        if any(name.startswith("d") or name == "manual_backward" for name in touched):
            _CELLS.append(dict(info=info, cell_id=getattr(info, "cell_id", None), source=source, plain=plain,
                               touched=touched, forward=_forward_pass_count, error=None))
    except Exception:  # the record is a help for check(): it must never disturb a cell
        pass


def _note_error(result):
    """IPython calls this after every cell: keep the error an answer cell raised (a failed check is not one)."""
    _running["info"] = None
    error = result.error_in_exec or result.error_before_exec
    if _CELLS and _CELLS[-1]["info"] is result.info and error is not None and not isinstance(error, CheckFailed):
        _CELLS[-1]["error"] = _one_line(error)


def _start_cell_log():
    """Listen to every cell run from now on (once, also when this cell runs again); False outside Jupyter."""
    try:
        events = get_ipython().events  # noqa: F821 (defined in Jupyter)
    except NameError:
        return False
    for event, callback in (("pre_run_cell", _note_cell), ("post_run_cell", _note_error)):
        for old in list(events.callbacks.get(event, [])):
            if getattr(old, "__name__", "") == callback.__name__:
                events.unregister(event, old)
        events.register(event, callback)
    return True


_LOGGING = _start_cell_log()


def _answer_cells(name, exercise=None):
    """The cells, oldest first, that made d<name> as it is now: the last one run that sets or changes it, and the
    ones before it back to a plain `d<name> = ...`. Exercises 2 and 3 only take their own answer cell."""
    wanted, tag = ANSWER_CELL_IDS.get(exercise), exercise or "ex1"
    others = set(ANSWER_CELL_IDS.values()) - {wanted}
    found = []
    for entry in reversed(_CELLS):
        # a cell another exercise's check took as its answer is not this one's (where Jupyter sends no cell ids)
        if "d" + name not in entry["touched"] or entry["cell_id"] in others or entry.get("exercise", tag) != tag:
            continue
        if wanted and entry["cell_id"] not in (wanted, None):
            continue
        found.insert(0, entry)
        if "d" + name in entry["plain"] or entry["error"] or len(found) == 5:
            return found
    return found


# Re-running an answer on fresh batches, as the grader does: the notebook's parameters, a batch of 17 and one of 32
# drawn with a generator of their own, the grader's forward pass (_model, from the diagnoses cell) and autograd's
# gradients as the reference. The gradients your answer may use are autograd's, so only this answer is tested.
FRESH_BATCHES = ((1, 17), (2, 32))  # (seed, batch size)
# The grader's stress replay, made by the grader's own code (_model.stress_parameters): a batchnorm column of tiny
# variance, tied and large logits, all in float64, judged within ATOL_FLOAT64. An epsilon left out shows only there.
STRESS_REPLAY = (404, 32)  # (seed, batch size), as the grader's example (its seed changes with every grading)
_QUIET = ("check", "progress", "hint", "show_graph", "draw_progress", "check_backward", "display")
_replay_cache = {}


def _does_nothing(*args, **kwargs):
    return None


def _fresh_batch(seed, size):
    """(values, grads) of one fresh batch: the tensors your cell sees (float32) and autograd's float64 gradients."""
    ix = torch.randint(0, Xtr.shape[0], (size,), generator=torch.Generator().manual_seed(seed))
    params = [globals()[p].detach().clone() for p in _model.PARAMETER_NAMES]
    with torch.no_grad():
        values = _model.forward(params, Xtr[ix], Ytr[ix])
    values.update(zip(_model.PARAMETER_NAMES, params), Xb=Xtr[ix], Yb=Ytr[ix])
    return values, _model.reference_gradients(params, Xtr[ix], Ytr[ix])


def _fresh_batches():
    if _forward_pass_count not in _replay_cache:  # drawn once per forward pass: a check stays quick
        for key in [k for k in _replay_cache if k != "stress"]:
            del _replay_cache[key]
        _replay_cache[_forward_pass_count] = [_fresh_batch(seed, size) for seed, size in FRESH_BATCHES]
    return _replay_cache[_forward_pass_count]


def _stress_batch():
    """(values, grads) of the stress replay: the tensors your cell sees (float64) and autograd's gradients."""
    if "stress" not in _replay_cache:  # it depends on the training set only
        seed, size = STRESS_REPLAY
        values, _ = _model.replay_values(Xtr, Ytr, seed, size, n_hidden=W1.shape[1], variant=_model.STRESS64)
        params = [values[p] for p in _model.PARAMETER_NAMES]
        _replay_cache["stress"] = values, _model.reference_gradients(params, values["Xb"], values["Yb"])
    return _replay_cache["stress"]


def _given(name, exercise):
    """The gradients an answer may use, as the grader gives them: those before it (Exercise 1), dhpreact
    (Exercise 3), none (Exercise 2)."""
    if exercise == "ex2":
        return []
    if exercise == "ex3":
        return ["hpreact"]
    return EX1_VARIABLES[:EX1_VARIABLES.index(name)]


def _rerun(cells, name, values, grads, given, exercise=None):
    """d<name> from your cells run on `values`, in a scratch namespace (the notebook's own is left alone). The
    gradients it may use come in the values' dtype (float64 on the stress replay), as the grader sends them.
    As in the grader, an Exercise 1 cell that reads what an earlier answer cell kept (a partial sum such as
    `dlogits_1`) gets it from that cell run on the same batch, and a helper of yours that asks autograd, called only
    as a statement of its own (the lecture's `cmp(...)`), does nothing."""
    graded = set(EX1_VARIABLES)
    scratch = {k: v for k, v in globals().items() if not (k.startswith("d") and k[1:] in graded)}
    scratch.update({k: v.detach().clone() for k, v in values.items()})
    dtype = values["W1"].dtype
    given_now = lambda: {"d" + v: grads[v].detach().to(dtype).clone() for v in given}  # noqa: E731
    scratch.update(given_now())
    scratch.update({helper: _does_nothing for helper in _QUIET})
    n_rows = values["Xb"].shape[0]
    scratch.update(n=n_rows, batch_size=n_rows)
    scratch.update(_stand_ins(cells, name, exercise, scratch))
    feeding = [] if exercise else _feeding_cells(cells, set(values) | {"d" + v for v in given})
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        for cell in feeding:  # the grader's worker ran them before this one; one that fails is left out, as there
            try:
                exec(compile(cell["source"], "<an earlier answer cell>", "exec"), scratch)
            except Exception:
                pass
        if feeding:
            scratch.update(given_now())  # the gradients before this one are autograd's again: one mistake, one unit
        for cell in cells:
            exec(compile(cell["source"], f"<your d{name} cell>", "exec"), scratch)
    return scratch.get("d" + name)


def _feeding_cells(cells, provided):
    """The earlier answer cells (the last run of each) that bound a tensor your cells read and do not make
    themselves, besides the batch's tensors and the gradients given (`provided`): in the grader's worker those
    cells ran before, on the same batch."""
    wanted = set()
    for cell in cells:
        try:
            tree = ast.parse(cell["source"])
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return []
        bound = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
        wanted |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                   and n.id not in bound | provided and isinstance(globals().get(n.id), torch.Tensor)}
    feeding = []
    first = next((i for i, entry in enumerate(_CELLS) if entry is cells[0]), 0) if cells else 0
    for entry in reversed(_CELLS[:first]):  # run before your cells, in this forward pass, as Exercise 1's
        if entry.get("exercise", "ex1") != "ex1":
            continue
        found = wanted & entry["touched"]
        if found and entry["forward"] == _forward_pass_count:
            feeding.insert(0, entry)
            wanted -= found
    return feeding


def _stand_ins(cells, name, exercise, scratch):
    """Your own helpers that the grader runs as stand-ins doing nothing: those its autograd scan flags, called only
    as a statement of their own (their result cannot reach the answer), as in backprop_ninja/grade/definitions.py."""
    rules = _scan.RULES.get(f"{exercise or 'ex1'}_{name}")
    quiet = {}
    for cell in cells if rules else []:
        try:
            tree = ast.parse(cell["source"])
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for statement in tree.body:
            call = getattr(statement, "value", None) if isinstance(statement, ast.Expr) else None
            helper = scratch.get(call.func.id) if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) \
                else None
            if not inspect.isfunction(helper) or getattr(helper, "__module__", None) != "__main__" \
                    or not _one_go.only_called_as_statement(tree, call.func.id):
                continue
            try:
                helper_source = textwrap.dedent(inspect.getsource(helper))
            except (OSError, TypeError):  # no source to read: left as it is
                continue
            finding = _scan.scan(helper_source, rules)
            # a helper that sets the answer itself (`global d...`) is the answer: its autograd is named, not hidden
            if finding is not None and finding.kind == "autograd" \
                    and not _one_go.may_set_global(helper_source, "d" + name):
                quiet[call.func.id] = _does_nothing
    return quiet


def _consumers(name, exercise=None):
    """The lines whose gradients d<name> is computed from, as the grader's unit has them: Exercise 2 starts from the
    loss, Exercise 3 from dhpreact, an Exercise 1 gradient from the lines that use <name>."""
    return _EXERCISE_CONSUMERS[exercise] if exercise else _DIAGNOSTICS.get(name, {}).get("consumers", [])


def _batch_scale(name, grads, exercise=None):
    """The tolerance's scale on one batch: the largest gradient involved (this one and those of its lines)."""
    consumers = _consumers(name, exercise)
    return max([grads[name].abs().max().item()] + [grads[c].abs().max().item() for c in consumers if c in grads]
               + ([1.0] if "loss" in consumers else []))


def _right(answer, name, grads, in_float64=False, exercise=None):
    """The grader's rule on one batch: a float tensor of the right shape within ATOL times the scale; on the float64
    stress replay within ATOL_FLOAT64 times it, unless the answer holds float32 numbers only (computed in float32,
    it can only be as exact as float32), as compare.py judges it."""
    reference = grads[name]
    if not isinstance(answer, torch.Tensor) or answer.shape != reference.shape or not answer.is_floating_point():
        return False
    mine = answer.detach().double()
    atol = ATOL_FLOAT64 if in_float64 and not _float32_numbers(mine.numpy()) else ATOL
    return bool(((mine - reference).abs() <= atol * _batch_scale(name, grads, exercise)).all())


def _stress_problem(cells, name, exercise):
    """None if your cells give the right d<name> on the stress replay, else what goes wrong there, as a sentence:
    the grader's "nearly right" (its ordinary replays pass by now)."""
    values, grads = _stress_batch()
    try:
        answer = _rerun(cells, name, values, grads, _given(name, exercise), exercise)
    except Exception:  # a float32 habit (e.g. a float32 one-hot) raises in float64 only: the grader leaves it out
        return None
    if _right(answer, name, grads, in_float64=True, exercise=exercise):
        return None
    where = ("far off in the batchnorm column of tiny variance and close elsewhere, as when the epsilon of "
             "bnvar + eps is missing from the derivative" if _only_tiny_column(answer, name, grads)
             else "by far more than float64 rounding: look for a constant slightly off (an epsilon left out, a "
                  "small term added) or float32 forced mid-way (.float())")
    return f"is nearly right, but wrong on {STRESS_WORDS}: {where}"


def _near(answer, name, grads, exercise=None):
    """Whether `answer` is off nowhere by more than NEAR_MISS times the tolerance (compare.py's near-miss)."""
    if not isinstance(answer, torch.Tensor) or name not in grads or answer.shape != grads[name].shape:
        return False
    diff = (answer.detach().double() - grads[name].double()).abs()
    return bool(torch.isfinite(diff).all() and (diff <= NEAR_MISS * ATOL * _batch_scale(name, grads, exercise)).all())


def _near_miss(cells, name, answer, exercise):
    """What the stress replay shows when d<name> is off on this batch, but only a little (_near), and so on fresh
    batches: the grader's "nearly right"; None otherwise, or when the stress replay passes it."""
    if not cells:
        return None
    answer = globals().get("d" + name) if answer is None else answer
    try:  # a diagnosis is a bonus: it must never stop the check itself
        if not _near(answer, name, _current_batch()[1], exercise):
            return None
        fresh = _fresh_problem(cells, name, exercise)
    except Exception:
        return None
    return fresh if fresh and "nearly right" in fresh else None


def _only_tiny_column(answer, name, grads):
    """Whether the answer is off (at float32's tolerance, as compare.py looks) only in the batchnorm column of tiny
    variance: where an epsilon left out shows."""
    reference, column = grads[name], _model.TINY_VARIANCE_COLUMN
    if not isinstance(answer, torch.Tensor) or answer.shape != reference.shape or reference.ndim == 0 \
            or reference.shape[-1] != W1.shape[1]:
        return False
    off = (answer.detach().double() - reference).abs() > ATOL * _batch_scale(name, grads)
    return bool(off[..., column].any() and not off[..., :column].any() and not off[..., column + 1:].any())


def _fresh_problem(cells, name, exercise=None):
    """None if your cells give the right d<name> on both fresh batches, else what goes wrong, as a sentence."""
    outcome = {}  # batch size -> True (right), False (wrong) or the error it raised
    for (values, grads), (_, size) in zip(_fresh_batches(), FRESH_BATCHES):
        try:
            answer = _rerun(cells, name, values, grads, _given(name, exercise), exercise)
            outcome[size] = _right(answer, name, grads, exercise=exercise) or ("near" if _near(answer, name, grads,
                                                                                                 exercise) else False)
        except NameError as err:
            missing = str(err).split("'")[1] if "'" in str(err) else ""
            if exercise and missing.startswith("d") and missing[1:] in EX1_VARIABLES:
                return (f"uses {missing}, which this exercise does not give: write d{name} from the forward "
                        f"pass's tensors alone" + (" and dhpreact" if exercise == "ex3" else ""))
            outcome[size] = _one_line(err)
        except Exception as err:
            outcome[size] = _one_line(err)
    if all(result is True for result in outcome.values()):
        return _stress_problem(cells, name, exercise)
    if all(result in (True, "near") for result in outcome.values()):  # the grader's near-miss, if the stress fails
        stress = _stress_problem(cells, name, exercise)
        if stress:
            return stress
    if outcome[32] is True:
        return ("is right when the batch has 32 examples but wrong on a fresh batch of 17: it looks like a literal "
                "32 where the batch size n belongs")
    error = next((result for result in outcome.values() if isinstance(result, str)), None)
    if error:
        return f"raised {error} when re-run on a fresh batch"
    return ("is right on this batch but wrong on fresh ones: compute it from the variables (the grader re-runs "
            "your cell on other batches)")


# The grader's rule probe (_probe, from the diagnoses cell): a right answer is re-run once more on this batch, with
# random gradients in place of those of the lines that use <name>. It follows its rule if it then gives the sum of
# its branches (autograd's share through each line); if it gives another combination of them, it was right only
# because a gradient it leaves out is exactly 0 here. The grader keeps the points and adds a note: so does check().
# Only where such a gradient exists (_probe.can_be_lucky): elsewhere a wrong combination fails on the fresh batches.
def _luck_note(cells, name):
    """Why your d<name> is right only by luck, as the grader's probe says it, or None."""
    consumers = _DIAGNOSTICS.get(name, {}).get("consumers", [])
    if not cells or not consumers or "loss" in consumers:
        return None  # dlogprobs's only line is the loss: no gradient to replace
    if not _probe.can_be_lucky(name, consumers):
        return None
    values, _ = _current_batch()
    params = [values[p].double() for p in _model.PARAMETER_NAMES]
    reference = _model.reference_gradients(params, values["Xb"], values["Yb"])
    generator = torch.Generator().manual_seed(_probe.PROBE_SEED + EX1_VARIABLES.index(name))
    size = _batch_scale(name, reference)
    random = {c: (torch.randn(reference[c].shape, generator=generator, dtype=torch.float64) * size).float().double()
              for c in consumers}  # float32 numbers, as the grader sends them
    given = _given(name, None)
    try:
        on_true = _rerun(cells, name, values, reference, given)
        on_probe = _rerun(cells, name, values, {**reference, **random}, given)
    except Exception:  # no answer under the probe: no evidence, nothing to say
        return None
    if not all(isinstance(a, torch.Tensor) for a in (on_true, on_probe)):
        return None
    shares = {c: share.numpy() for c, share in _local_shares(name, params, values, random).items()}
    expected = sum(shares.values())
    scale = max([abs(expected).max()] + [r.abs().max().item() for r in random.values()])
    return _probe.luck_of(name, shares, on_probe.detach().double().numpy(), on_true.detach().double().numpy(),
                          scale, size)


def _local_shares(name, params, values, upstream):
    """consumer -> autograd's share of d<name> through that line alone, on `upstream`, in float64. autograd.grad(c,
    x) sums every path from x to c; a path whose first line is another use of x (logits -> logit_maxes ->
    norm_logits) is taken back out with that line's own share."""
    leaves = [p.clone().requires_grad_() for p in params]
    with torch.enable_grad():
        v = _model.forward(leaves, values["Xb"], values["Yb"])
    v.update(zip(_model.PARAMETER_NAMES, leaves))
    consumers = sorted(upstream, key=_model.INTERMEDIATES.index)  # in the forward pass's order

    def local(c, u):
        # the gradient of the scalar (c * u).sum() is the same product; handing torch `u` itself as the upstream
        # would make its first call import sympy (about half a second)
        total = torch.autograd.grad((v[c] * u).sum(), v[name], retain_graph=True)[0]
        for earlier in consumers[:consumers.index(c)]:
            through = torch.autograd.grad((v[c] * u).sum(), v[earlier], retain_graph=True, allow_unused=True)[0]
            if through is not None:
                total = total - local(earlier, through)
        return total

    return {c: local(c, upstream[c]).detach() for c in upstream}


_exact_explained = False


def _compare(name, answer=None, exercise=None):
    """(status, detail) for your d<name> (or `answer`) against autograd's <name>.grad. The status is "done", "wrong"
    or "not yet"; the detail completes a sentence that starts with d<name>. Never raises."""
    answer = globals().get("d" + name) if answer is None else answer
    target = globals().get(name)
    if answer is None:
        return "not yet", "is not defined yet"
    if not isinstance(answer, torch.Tensor):
        return "wrong", f"is a {type(answer).__name__}, but it should be a tensor"
    if _grad(name) is None:
        return "wrong", (f"cannot be checked: {name} is no longer the tensor of the forward pass (was it assigned "
                         f"again?); run the forward pass cell again, then this one")
    expected = _grad(name)
    if answer.shape != expected.shape:
        return "wrong", f"has shape {tuple(answer.shape)}, but {name} has shape {tuple(expected.shape)}"
    if not answer.is_floating_point():
        return "wrong", f"holds {answer.dtype} numbers; a gradient holds floats"
    source = _autograds_own(answer)
    if source is not None:
        return "wrong", f"is autograd's own answer ({source}.grad); derive it by hand"
    answer = answer.detach().to(expected.dtype)
    exact = torch.equal(answer, expected)
    # The grader's rule: off by at most ATOL times the largest gradient involved (this one and those it is made
    # from), since that is the size of float32 rounding, even for gradients that are ~0 (db1, dlogit_maxes).
    close = bool(((answer - expected).abs() <= ATOL * _scale(name, exercise)).all())
    maxdiff = (answer - expected).abs().max().item()
    detail = f"exact: {str(exact):5s} | approximate: {str(close):5s} | maxdiff: {maxdiff:.2e}"
    return ("done" if close else "wrong"), detail


def _grad(name):
    """autograd's gradient of the forward pass's tensor <name>, or None (not run yet, or the name was reused): as
    autograd_reference() left it, whatever a cell has added into .grad since."""
    tensor = globals().get(name)
    kept = _reference.get(name)
    if kept is not None and kept[0] is tensor:
        return kept[1]
    if isinstance(tensor, torch.Tensor) and (tensor.is_leaf or tensor.retains_grad):
        return tensor.grad
    return None


def _upstream(name):
    """The tensors that use <name> (the lines after it), with their autograd gradients: consumer -> (tensor, grad)."""
    found = {}
    for c in _DIAGNOSTICS.get(name, {}).get("consumers", []):
        if c == "loss" and isinstance(globals().get(c), torch.Tensor):
            found[c] = (globals()[c], torch.ones(()))
        elif _grad(c) is not None:
            found[c] = (globals()[c], _grad(c).clone())
    return found


def _scale(name, exercise=None):
    if exercise:  # the gradients an exercise starts from: the loss's (1) or dhpreact
        sizes = [1.0 if c == "loss" else _grad(c).abs().max().item() for c in _consumers(name, exercise)]
        return max([_grad(name).abs().max().item()] + sizes)
    sizes = [_grad(name).abs().max().item()] + [g.abs().max().item() for _, g in _upstream(name).values()]
    return max(sizes)


def _diagnosis(name, answer=None):
    """The likely mistake in d<name> (or `answer`), named by the grader's own code (the diagnoses cell below), from
    what autograd knows: the share of each line that uses <name>, and more. None if it is right or not a tensor."""
    answer = globals().get("d" + name) if answer is None else answer
    x = globals()[name]
    if not isinstance(answer, torch.Tensor) or name not in _DIAGNOSTICS:
        return None
    row, reference = _DIAGNOSTICS[name], _grad(name).double().numpy()

    def share(output, upstream):  # autograd's gradient of x through `output` alone
        return torch.autograd.grad(output, x, upstream, retain_graph=True)[0].double().numpy()

    upstream = _upstream(name)
    # Each line's own share, as the grader's table has it: not autograd.grad(c, x), which also runs through another
    # use of x (probs = counts * counts_sum_inv, and counts_sum_inv comes from counts too)
    params = [globals()[p].detach().double() for p in _model.PARAMETER_NAMES]
    batch = {"Xb": Xb, "Yb": Yb}
    lines = {c: g.double() for c, (_, g) in upstream.items() if c != "loss"}

    def local_share(c, g):  # line c's own share on the upstream g (the other lines keep theirs)
        return _local_shares(name, params, batch, {**lines, c: g.double()})[c].numpy()

    # autograd.grad also adds into the .grad of every intermediate it passes that retains its gradient: put them back
    kept = {v: _grad(v).clone() for v in EX1_VARIABLES if _grad(v) is not None}
    try:
        shares = {c: (share(t, g) if c == "loss" else local_share(c, g)) for c, (t, g) in upstream.items()}
        swaps = {c: local_share(c, t.detach()) + sum(shares[o] for o in shares if o != c)
                 for c, (t, _) in upstream.items() if c != "loss"}
        paths = {p: share(globals()[p], _grad(p).clone()) for p in row["paths"]}
    finally:
        for v, grad in kept.items():
            globals()[v].grad = grad
    if paths:
        paths["direct"] = reference - sum(paths.values())
    others = {v: _grad(v).double().numpy() for v in EX1_VARIABLES
              if v != name and _grad(v) is not None and _grad(v).shape == _grad(name).shape}
    targets = F.one_hot(Yb, 27).bool().numpy() if row["shape"] == "(n, 27)" else None
    argmax = F.one_hot(logits.argmax(1), 27).bool().numpy() if row["argmax"] else None
    repeated = None
    if row["lookup"]:  # rows of a table looked up by Xb: those of characters used more than once accumulate
        uses = torch.bincount(Xb.view(-1), minlength=x.shape[0])
        repeated = (uses > 1)[:, None].expand(x.shape).numpy()
    clues = Clues(n=n, scale=_scale(name), bessel=row["bessel"], shares=shares, paths=paths, forward_swaps=swaps,
                  others=others, argmax=argmax, targets=targets, repeated=repeated)
    mine = answer.detach().double().numpy()
    if mine.shape != reference.shape:
        return diagnose_shape(mine, reference, clues, name)
    return diagnose_values(mine, reference, clues, name)


def _line(name, detail):
    return f"{'d' + name:15s} | {detail}"


def _current_batch():
    """This notebook's forward pass as a replay: its tensors (detached) and autograd's gradients."""
    names = list(_model.INTERMEDIATES) + list(_model.PARAMETER_NAMES) + ["Xb", "Yb", "loss"]
    values = {v: globals()[v].detach() for v in names}
    return values, {v: _grad(v) for v in _model.INTERMEDIATES if _grad(v) is not None}


def _right_from_right_inputs(cells, name, exercise=None):
    """Whether your cells (which raised here, or gave a d<name> off on your own inputs) give the right d<name> when
    they get autograd's gradients for the ones before it (Exercise 3: dhpreact), as the grader runs them: then only
    an earlier gradient is missing or off."""
    values, grads = _current_batch()
    for p in _model.PARAMETER_NAMES:
        if _grad(p) is not None:
            grads[p] = _grad(p)
    try:
        answer = _rerun(cells, name, values, grads, _given(name, exercise), exercise)
    except Exception:
        return False
    return _right(answer, name, grads, exercise=exercise) and _fresh_problem(cells, name, exercise) is None


def _stale_from(cells):
    """The first answer (in the notebook's order) computed before the last run of the forward pass, if `cells`
    (those of the answer checked) are."""
    if not cells or cells[-1]["forward"] == _forward_pass_count:
        return None
    for variable in EX1_VARIABLES:
        found = _answer_cells(variable)
        if found and found[-1]["forward"] != _forward_pass_count:
            return variable
    return None


def _inexact_inputs(name):
    """The gradients of the lines that use <name> that are not exactly autograd's (asked when none is off)."""
    found = []
    for c in _consumers(name):
        mine, expected = globals().get("d" + c), _grad(c)
        if c != "loss" and isinstance(mine, torch.Tensor) and isinstance(expected, torch.Tensor) \
                and mine.shape == expected.shape and not torch.equal(mine.detach().to(expected.dtype), expected):
            found.append(c)
    return found


def _wrong_inputs(name):
    """The gradients of the lines that use <name> (what d<name> is built from) that are off themselves."""
    return [c for c in _consumers(name) if c != "loss" and _compare(c)[0] == "wrong"]


def _session_problem(name, exercise, cells):
    """(short, message): what the record of your session says is wrong with d<name> before any number is compared,
    or None."""
    where = {"ex2": "Exercise 2's cell", "ex3": "Exercise 3's cell"}.get(exercise, "its cell above")
    if exercise and not cells:
        return "is not defined yet", (f"d{name} is not defined yet in {where}: answer it (in place of `raise "
                                      f"NotImplementedError()`), run it, then run this one again.")
    use = _autograd_use(cells, name, exercise)  # first, as in the grader: a cell that asks autograd never runs there
    current = globals().get("d" + name)
    if use and not (isinstance(current, torch.Tensor) and _autograds_own(current)):  # that one is named below
        return "its cell asks autograd", f"d{name}: {use}."
    if cells and cells[-1]["error"]:
        return "its cell raised", f"d{name}'s cell raised {cells[-1]['error']}: fix it, run it, then run this one again."
    if exercise and cells:  # the grader's own rule for Exercises 2 and 3, with its words
        rule = ONE_GO_RULES[exercise]
        broken = _one_go.read_problem(cells[-1]["source"], "Exercise " + exercise[-1], tuple(rule["gives"]),
                                      set(rule["refused"]))
        if broken:
            return "breaks the exercise's rule", f"d{name}: {broken}."
    return None


def _failure(name, detail, answer, inputs):
    """The one-line message for a d<name> that does not match autograd on this batch."""
    found = None
    if detail.startswith(("exact:", "has shape")):  # the values or the shape are off: name the likely mistake
        try:
            found = _diagnosis(name, answer)
        except Exception:  # naming the mistake is a bonus: never let it hide the failure itself
            found = None
    if found is None and detail.startswith("exact:"):
        message = f"d{name} does not match autograd yet ({detail.split('| ')[-1]})."
    elif found is None:
        message = f"d{name} {detail}."
    else:
        message = f"d{name} is off: {found.message}."
    if inputs:  # only where a gradient it is built from is off too
        message += f" d{inputs[0]}, which it builds on, is off too: fix that first."
    return message


def _verdict(name, exercise):
    """(line, message, passes): what check() prints, the one-line message if it stops (else None)."""
    cells = _answer_cells(name, exercise) if _LOGGING else []
    for cell in cells:
        # a check is what says which exercise a cell answers; one inside the cell itself does not, since where
        # Jupyter sends no cell ids, check("logits") in Exercise 2's cell would take it for Exercise 1's
        if cell["info"] is not _running["info"]:
            cell.setdefault("exercise", exercise or "ex1")
    problem = _session_problem(name, exercise, cells) if _LOGGING else None
    if problem and problem[0] == "its cell raised" and exercise != "ex2" \
            and _right_from_right_inputs(cells, name, exercise):
        # the grader gives it full points: it runs the cell with right gradients before it
        return _line(name, f"right, but its cell raised {cells[-1]['error']} here: an earlier gradient it reads is "
                           f"missing or off"), None, True
    if problem:
        return _line(name, problem[0]), problem[1], False
    answer = None
    if exercise and cells:  # Exercises 2 and 3: their own cell's answer, not a d<name> left by Exercise 1
        values, grads = _current_batch()
        try:
            answer = _rerun(cells, name, values, grads, _given(name, exercise), exercise)
        except Exception as err:
            message = f"d{name}'s cell raised {_one_line(err)} when re-run."
            return _line(name, "its cell raised"), message, False
    status, detail = _compare(name, answer, exercise)
    line = _line(name, detail)
    if status == "not yet":
        return line, (f"d{name} is not defined yet: answer its cell above (in place of `raise "
                      f"NotImplementedError()`), run that cell, then run this one again."), False
    if status == "done":
        fresh = _fresh_problem(cells, name, exercise) if cells else None
        if fresh:
            return line, f"d{name} {fresh}.", False
        try:
            note = None if exercise else _luck_note(cells, name)
        except Exception:  # a note is a bonus: it must never stop a right answer's check
            note = None
        if note:  # the grader's default policy keeps the points, with the note: a note here too, not a failure
            line += f"\nnote: d{name} is right here only by luck: {note}. The grader keeps the points, with this note."
        return line, None, True
    near = _near_miss(cells, name, answer, exercise) if detail.startswith("exact:") else None
    if near:  # the grader's "nearly right": close on the ordinary batches, wrong on its stress replay
        return line, f"d{name} {near}.", False
    stale = None if exercise else _stale_from(cells)
    if stale:
        return line, (f"d{name} was computed from an earlier forward pass: re-run the cells from d{stale}'s "
                      f"on."), False
    inputs = [] if exercise else _wrong_inputs(name)
    if inputs and cells and _fresh_problem(cells, name) is None:
        # right from right inputs, as the grader scores it: only the earlier mistake is to fix
        return line + f" | right, but d{inputs[0]} is off", None, True
    inexact = [] if exercise or inputs or not cells else _inexact_inputs(name)
    if inexact and _right_from_right_inputs(cells, name):
        # close enough inputs whose rounding this gradient magnifies; the grader gives it autograd's, and so do we
        return line + f" | right from autograd's d{inexact[0]}; yours differs by rounding", None, True
    return line, _failure(name, detail, answer, inputs), False


_passed = {}  # name -> (the d<name> tensor whose check passed, its in-place version counter then)


def _changed_in_place():
    """The gradients whose check passed and that were written into since (in place: +=, [...] =, .add_())."""
    return [var for var, (tensor, version) in _passed.items()
            if globals().get("d" + var) is tensor and tensor._version != version]


def _aliasing_note(var, name):
    return (f"note: d{var} changed after its own check passed: a cell wrote into it in place. After `d{name} = "
            f"d{var}` both names are one tensor, and `d{name} += ...` changes d{var} too; start from "
            f"`d{var}.clone()` instead, then re-run d{var}'s cell.")


def check(name):
    """Print how your d<name> compares with autograd; stop with a one-line message when it is off (while nbgrader
    grades, it only prints). check("ex2") and check("ex3") check the answer cells of Exercises 2 and 3."""
    global _exact_explained
    exercise = name if name in EXERCISE_VARIABLE else None
    name = EXERCISE_VARIABLE.get(name, name)
    line, message, passes = _verdict(name, exercise)
    print(line)
    for var in _changed_in_place():
        if var != name:
            print(_aliasing_note(var, name))
    current = globals().get("d" + name)
    if passes and not exercise and isinstance(current, torch.Tensor):
        _passed[name] = (current, current._version)
    if passes and "exact: False" in line and not _exact_explained:
        _exact_explained = True
        print("(exact: False is fine. Your float32 answer is computed in another order than autograd's, so the "
              "last bits differ; approximate: True is what counts.)")
    if passes and _LOGGING and not _answer_cells(name, exercise):
        print(f"(no cell run since the helpers cell sets d{name}, so it was not re-run on fresh batches)")
    if message and not GRADING:
        raise CheckFailed(message)


def autograd_reference():
    """Autograd's backward pass through the forward pass above, keeping the gradient of every intermediate
    (retain_grad) and the graph (so that check() can ask for the share of each use of a variable). The forward cell
    calls it last, so it also counts the forward passes: check() spots answers computed from an earlier one."""
    global _forward_pass_count
    _forward_pass_count += 1
    for p in parameters:
        p.grad = None
    for name in _model.INTERMEDIATES:
        globals()[name].retain_grad()
    loss.backward(retain_graph=True)
    # kept aside: a later .backward() or autograd.grad in a cell adds into .grad, and check() must not compare with that
    _reference.clear()
    _reference.update({name: (globals()[name], globals()[name].grad.clone())
                       for name in [*_model.INTERMEDIATES, *_model.PARAMETER_NAMES]})


def progress():
    """Print the status of every gradient of Exercise 1 (dlogits and dhprebn are also Exercises 2 and 3)."""
    counts, statuses = {}, {}
    for name in EX1_VARIABLES:
        try:
            status, detail = _compare(name)
        except Exception as err:  # a summary must never stop the notebook
            status, detail = "wrong", f"could not be compared: {type(err).__name__}: {err}"
        counts[status] = counts.get(status, 0) + 1
        statuses[name] = status
        changed = " (changed in place after its check passed: a later `=` then `+=`? use .clone())" \
            if name in _changed_in_place() else ""
        print(f"{status:8s} {_line(name, detail)}{changed}")
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    if not UNDER_NBGRADER:
        try:  # the same graph as show_graph(), coloured by status (draw_progress comes from the tutor cell below)
            from IPython.display import display

            display(draw_progress(statuses))
        except Exception:  # no picture outside a notebook: the lines above say it all
            pass


# Exercise 4: compare manual_backward with autograd on one batch of the wide network, before training with it.
def backward_problems():
    """What differs between manual_backward and autograd on one batch, as a list of sentences."""
    global _exact_explained
    params = init_parameters(200, seed=42)
    for p in params:
        p.requires_grad = True
    gen = torch.Generator().manual_seed(7)
    ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=gen)
    loss, cache = forward(params, Xtr[ix], Ytr[ix])
    loss.backward()
    with torch.no_grad():
        mine = manual_backward(params, {k: v.detach() for k, v in cache.items()})
    names = ["C", "W1", "b1", "W2", "b2", "bngain", "bnbias"]
    problems, right, inexact = [], {}, False
    for name, p, grad in zip(names, params, mine):
        right["d" + name] = False
        if not isinstance(grad, torch.Tensor):
            problems.append(f"d{name}: expected a tensor of shape {tuple(p.shape)}")
            continue
        reference, clues = p.grad.double().numpy(), Clues(n=batch_size, scale=p.grad.abs().max().item())
        if grad.shape != p.shape:
            problems.append(f"d{name}: {diagnose_shape(grad.detach().double().numpy(), reference, clues).message}")
            continue
        maxdiff = (grad - p.grad).abs().max().item()
        close = torch.allclose(grad, p.grad, rtol=1e-4, atol=1e-6 * p.grad.abs().max().item() + 5e-8)
        exact = torch.equal(grad.detach().to(p.grad.dtype), p.grad)  # the same columns as check() prints
        print(f"{'d' + name:15s} | exact: {str(exact):5s} | approximate: {str(close):5s} | maxdiff: {maxdiff:.2e}")
        right["d" + name] = close
        inexact = inexact or (close and not exact)
        if not close:
            problems.append(f"d{name}: {diagnose_values(grad.detach().double().numpy(), reference, clues).message}")
    if inexact and not problems and not _exact_explained:
        _exact_explained = True
        print("(exact: False is fine: your float32 gradients are computed in another order than autograd's, so the "
              "last bits differ; approximate: True is what counts.)")
    # which gradients are right tells where along the chain the first mistake is
    return [locate_in_chain(right)] + problems if problems else []


def check_backward():
    """Print the comparison; stop with a one-line message when it is off (while nbgrader grades, it only prints)."""
    try:
        problems = backward_problems()
    except NotImplementedError as err:
        problems = [f"manual_backward raised NotImplementedError{': ' + str(err) if str(err) else ''}: answer its "
                    f"cell above (in place of `raise NotImplementedError()`), run it, then run this cell again"]
    except Exception as err:
        problems = [f"manual_backward could not be checked: {type(err).__name__}: {err}"]
    for problem in problems:
        print(problem)
    if problems and not GRADING:
        raise CheckFailed("; ".join(problems).replace("\n", " "))


def finite_difference(f, x, eps=1e-6):
    """Numerical gradient of the scalar f(x) with respect to each entry of tensor x, in float64."""
    x = x.detach().double().clone()
    grad = torch.zeros_like(x)
    flat, flat_grad = x.view(-1), grad.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        up = float(f(x))
        flat[i] = old - eps
        down = float(f(x))
        flat[i] = old
        flat_grad[i] = (up - down) / (2 * eps)
    return grad


# Example, on a function the network does not use: the local derivative of sin is cos.
t = torch.tensor([0.5, 2.0, 4.0])
print(finite_difference(lambda x: x.sin().sum(), t), "vs", t.double().cos())

# %% nbgrader={"grade": false, "grade_id": "diagnoses", "locked": true, "schema_version": 3, "solution": false}
# `backprop-ninja assign` fills this cell from the kit's backprop_ninja/diagnose.py and units table: how check()
# names a likely mistake.

# %% [markdown] nbgrader={"grade": false, "grade_id": "tutor_md", "locked": true, "schema_version": 3, "solution": false}
# ### When you are stuck: `hint` and `show_graph`
#
# `hint("counts")` helps with one gradient, one step per call, so you can ask for exactly as much as you need:
# the first call shows the lines that use `counts` and the rule that applies to them, the second gives the local
# derivative of each of those lines, and the third shows the answer line itself (read from the course's solutions
# notebook, if you have it). `hint("ex2")`, `hint("ex3")` and `hint("ex4")` work for the later exercises: their
# first call says which view to take, the second gives the steps of the derivation (Exercises 2 and 3) or the plan
# of the function (Exercise 4), the third the answer.
#
# `show_graph()` draws the forward pass as a graph; `show_graph("counts")` highlights `counts` and the lines that
# use it. `progress()` draws the same graph coloured by where you stand.

# %% nbgrader={"grade": false, "grade_id": "tutor", "locked": true, "schema_version": 3, "solution": false}
# `backprop-ninja assign` fills this cell from the kit's units table (backprop_ninja/tutor.py): hint, show_graph
# and draw_progress, in plain Python with matplotlib.

# %% [markdown] nbgrader={"grade": false, "grade_id": "model_md", "locked": true, "schema_version": 3, "solution": false}
# ### The network
#
# Each character gets a 10-dimensional embedding (`C`). The three embeddings of a context are concatenated and fed
# to a hidden layer of 64 units (`W1`, `b1`), batch-normalised (`bngain`, `bnbias`), squashed with `tanh`, and
# mapped to 27 logits (`W2`, `b2`).
#
# The initialisation follows the lecture with one change: **every random draw comes from the seeded generator `g`**.
# The lecture draws `bngain` and `bnbias` from PyTorch's unseeded global generator, so its exact numbers cannot be
# reproduced; here they can. The small random values in `b1`, `bngain` and `bnbias` (instead of zeros and ones) make
# sure a wrong gradient cannot hide behind a zero.

# %% nbgrader={"grade": false, "grade_id": "model", "locked": true, "schema_version": 3, "solution": false}
n_embd = 10
n_hidden = 64
batch_size = 32
n = batch_size  # a shorter name for the batch size: use it in your formulas

g = torch.Generator().manual_seed(2147483647)
C = torch.randn((vocab_size, n_embd), generator=g)
W1 = torch.randn((n_embd * block_size, n_hidden), generator=g) * (5 / 3) / (n_embd * block_size) ** 0.5
b1 = torch.randn(n_hidden, generator=g) * 0.1  # useless under batchnorm, but its gradient is still graded
W2 = torch.randn((n_hidden, vocab_size), generator=g) * 0.1
b2 = torch.randn(vocab_size, generator=g) * 0.1
bngain = torch.randn((1, n_hidden), generator=g) * 0.1 + 1.0
bnbias = torch.randn((1, n_hidden), generator=g) * 0.1
parameters = [C, W1, b1, W2, b2, bngain, bnbias]
for p in parameters:
    p.requires_grad = True
print(sum(p.nelement() for p in parameters), "parameters")
batch_state = g.get_state()  # where the forward pass below draws its batch from, every time it runs

# %% [markdown] nbgrader={"grade": false, "grade_id": "forward_md", "locked": true, "schema_version": 3, "solution": false}
# ## The forward pass, one small step per line
#
# One minibatch of `n` examples, one named tensor per line: each has a gradient for you to write, and the shapes in
# the comments are half the work. The cell draws **the same minibatch every time it runs**, so running it again keeps
# your answers valid. `bnvar` divides by $n-1$ (Bessel's correction), as in the lecture (`nn.BatchNorm1d` would use
# $n$ while training).

# %% nbgrader={"grade": false, "grade_id": "forward", "locked": true, "schema_version": 3, "solution": false}
g.set_state(batch_state)  # the same batch on every run of this cell: re-running it keeps your answers valid
ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
Xb, Yb = Xtr[ix], Ytr[ix]
emb = C[Xb]                                       # (n, 3, 10) the embedding of each context character
embcat = emb.view(emb.shape[0], -1)               # (n, 30)    the three embeddings side by side
hprebn = embcat @ W1 + b1                         # (n, 64)    hidden layer, before batchnorm
bnmeani = 1 / n * hprebn.sum(0, keepdim=True)     # (1, 64)    mean over the batch
bndiff = hprebn - bnmeani                         # (n, 64)
bndiff2 = bndiff**2                               # (n, 64)
bnvar = 1 / (n - 1) * bndiff2.sum(0, keepdim=True)  # (1, 64)  variance, with Bessel's n-1
bnvar_inv = (bnvar + 1e-5) ** -0.5                # (1, 64)    1/sqrt(variance)
bnraw = bndiff * bnvar_inv                        # (n, 64)    normalised
hpreact = bngain * bnraw + bnbias                 # (n, 64)    scaled and shifted
h = torch.tanh(hpreact)                           # (n, 64)    hidden activations
logits = h @ W2 + b2                              # (n, 27)
logit_maxes = logits.max(1, keepdim=True).values  # (n, 1)     subtracted for numerical safety
norm_logits = logits - logit_maxes                # (n, 27)
counts = norm_logits.exp()                        # (n, 27)
counts_sum = counts.sum(1, keepdim=True)          # (n, 1)
counts_sum_inv = counts_sum**-1                   # (n, 1)
probs = counts * counts_sum_inv                   # (n, 27)    softmax
logprobs = probs.log()                            # (n, 27)
loss = -logprobs[range(n), Yb].mean()             # ()         mean negative log-likelihood
print("loss", loss.item())
autograd_reference()  # autograd's backward pass, keeping every gradient for check() to compare with

# %% [markdown] nbgrader={"grade": false, "grade_id": "ex1_md", "locked": true, "schema_version": 3, "solution": false}
# # Exercise 1: backpropagate through every step
#
# Walk the forward pass backwards. For each tensor `x`, write `dx`: the gradient of `loss` with respect to `x`,
# a tensor of exactly the same shape as `x`. The recipe is always the same chain rule:
#
# > `dx` = (local derivative of the line that *used* `x`) × (gradient of that line's result),
#
# where × is a product entry by entry, except after a matrix product: there it is a matrix product with the other
# factor transposed (the shapes tell you on which side). Two rules cover almost every trap:
#
# * **Broadcasting in the forward pass means a sum in the backward pass.** If a `(1, 64)` tensor was stretched over
#   `n` rows, each row sent gradient back to it: add them up with `.sum(0, keepdim=True)`.
# * **A tensor used twice collects gradient from both uses.** The two contributions add up.
#
# Each cell may use every tensor of the forward pass, `n`, and the gradients you wrote above it.
#
# ### `dlogprobs`, shape `(n, 27)`
# The last line, `loss = -logprobs[range(n), Yb].mean()`, reads one entry from each of the `n` rows of `logprobs`
# (the log-probability of the correct next character `Yb`), averages those `n` numbers and flips the sign. Which
# entries does the loss read, and how much does it move when you nudge one of them? And when you nudge an entry it
# never reads? Your answer has the shape of `logprobs`, `(n, 27)`. Stuck? `hint("logprobs")`

# %% nbgrader={"grade": false, "grade_id": "ex1_logprobs", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dlogprobs = torch.zeros_like(logprobs)
dlogprobs[range(n), Yb] = -1.0 / n
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_logprobs", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("logprobs")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_logprobs")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "probs_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dprobs`, shape `(n, 27)`
# `probs` is used once, in `logprobs = probs.log()`, which takes the natural logarithm of every entry on its own. Both
# tensors are `(n, 27)`, and each entry of `logprobs` depends only on the entry of `probs` in the same place: no
# broadcast, nothing to sum, just a rule applied element by element and the chain rule.
#
# Once `check` passes, look at your `dprobs`: which entries are largest in magnitude (none is positive), and why does
# that make sense for learning?
#
# Stuck? `hint("probs")`

# %% nbgrader={"grade": false, "grade_id": "ex1_probs", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dprobs = (1.0 / probs) * dlogprobs
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_probs", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("probs")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_probs")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "counts_sum_inv_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dcounts_sum_inv`, shape `(n, 1)`
# `counts_sum_inv` holds one number per row: one over the sum of that row's counts. It is used in
# `probs = counts * counts_sum_inv`, which multiplies the `(n, 27)` tensor `counts` by this `(n, 1)` column. To make
# the shapes fit, PyTorch **broadcasts** the column: each row's number is stretched across all 27 columns of its row,
# so it takes part in 27 products. Each of those 27 uses sends gradient back to it, and your answer must come back to
# the shape `(n, 1)`.
#
# Stuck? `hint("counts_sum_inv")`

# %% nbgrader={"grade": false, "grade_id": "ex1_counts_sum_inv", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dcounts_sum_inv = (counts * dprobs).sum(1, keepdim=True)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_counts_sum_inv", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("counts_sum_inv")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_counts_sum_inv")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "counts_sum_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dcounts_sum`, shape `(n, 1)`
# `counts_sum_inv = counts_sum**-1` takes the reciprocal of each row sum, entry by entry. Both tensors are `(n, 1)`,
# one number per row, and each result depends only on the input in the same place: nothing was broadcast, so there is
# nothing to sum. The line raises `counts_sum` to a power, so a rule from school calculus applies.
#
# Why `counts_sum**-1` and not `1 / counts_sum`? Both give the same numbers, but autograd differentiates each its own
# way: a power by the power rule, a division from its result (as minus the result squared). Written as a power, the
# power rule you apply is the very computation autograd does, so your answer can agree with it to the last bit
# (`exact: True`); after a division, the same derivative computed your way would differ in the last bits, right
# only approximately.
#
# Stuck? `hint("counts_sum")`

# %% nbgrader={"grade": false, "grade_id": "ex1_counts_sum", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dcounts_sum = (-counts_sum**-2) * dcounts_sum_inv
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_counts_sum", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("counts_sum")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_counts_sum")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "counts_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dcounts`, shape `(n, 27)`
# `counts` is **used twice**, and each use sends gradient back:
#
# * in `probs = counts * counts_sum_inv`, where each entry, `(n, 27)`, is multiplied by the `(n, 1)` factor of its row;
# * in `counts_sum = counts.sum(1, keepdim=True)`, which adds up the 27 entries of each row into an `(n, 1)` column.
#
# Work out each branch on its own, each with the shape of `counts`, `(n, 27)`, then add them. Forgetting one of the two
# is the classic mistake here: if `check` says you are off, count your branches first.
#
# Stuck? `hint("counts")`

# %% nbgrader={"grade": false, "grade_id": "ex1_counts", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dcounts = counts_sum_inv * dprobs
dcounts += torch.ones_like(counts) * dcounts_sum
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_counts", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("counts")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_counts")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "norm_logits_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dnorm_logits`, shape `(n, 27)`
# `counts = norm_logits.exp()` raises $e$ to the power of every entry on its own. Both tensors are `(n, 27)`, so this is
# again a rule applied element by element, with nothing to sum. Before you compute anything new, look at the tensors
# the forward pass already made: one of them may be exactly what you need.
#
# Stuck? `hint("norm_logits")`

# %% nbgrader={"grade": false, "grade_id": "ex1_norm_logits", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dnorm_logits = counts * dcounts
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_norm_logits", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("norm_logits")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_norm_logits")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "logit_maxes_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dlogit_maxes`, shape `(n, 1)`
# `logit_maxes` holds the largest logit of each row, one number per row. It is used in
# `norm_logits = logits - logit_maxes`, which subtracts this `(n, 1)` column from the `(n, 27)` logits: the column is
# **broadcast** across the 27 entries of its row, so each number is used 27 times, and its gradient must come back to
# `(n, 1)`. Mind the sign: it is subtracted.
#
# When `check` passes, look at your numbers: they are zero up to rounding. The maximum is subtracted for numerical
# safety (the exponential of a large logit would overflow), and what allows it is that subtracting any constant from
# a row of logits leaves the softmax unchanged: so the loss cannot depend on `logit_maxes`.
#
# Stuck? `hint("logit_maxes")`

# %% nbgrader={"grade": false, "grade_id": "ex1_logit_maxes", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dlogit_maxes = (-dnorm_logits).sum(1, keepdim=True)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_logit_maxes", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("logit_maxes")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_logit_maxes")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "logits_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dlogits`, shape `(n, 27)`
# `logits` is **used twice** as well:
#
# * in `norm_logits = logits - logit_maxes`, where both `logits` and `norm_logits` are `(n, 27)`;
# * in `logit_maxes = logits.max(1, keepdim=True).values`, which keeps only the largest of the 27 entries of each row,
#   giving `(n, 1)`. Ask which entries of a row the maximum actually depends on.
#
# Work out each branch with the shape `(n, 27)`, then add them. If you add them in two statements, mind a trap of
# Python: after `dx = dy` the two names are *one* tensor, so a following `dx += ...` also changes `dy`, a gradient
# you have already checked. Start from a copy, `dx = dy.clone()`, or add both branches in one expression (which makes
# a new tensor); `check` says so when an earlier gradient changed after its check passed. Two tools may help: `logits.max(1).indices` tells you
# where the maxima are, and `F.one_hot` turns a tensor of indices into a tensor of 0s and 1s. Give it
# `num_classes=27` (or `logits.shape[1]`): by default it makes only as many columns as the largest index plus one, so
# on a batch where no index reaches the last column it is too narrow, and the next operation stops with a size
# mismatch between the two tensors.
#
# Stuck? `hint("logits")`

# %% nbgrader={"grade": false, "grade_id": "ex1_logits", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dlogits = dnorm_logits.clone()
dlogits += F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) * dlogit_maxes
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_logits", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("logits")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_logits")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "h_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dh`, `dW2`, `db2`: a linear layer
# `logits = h @ W2 + b2` multiplies the hidden activations `h`, shape `(n, 64)`, by the weight matrix `W2`, shape
# `(64, 27)`, and adds the bias `b2`, shape `(27,)`; the result `logits` is `(n, 27)`. This line is the only use of each
# of the three, so each of their gradients comes from `dlogits`, `(n, 27)`, alone.
#
# * `dh`, shape `(n, 64)`, and `dW2`, shape `(64, 27)`: the gradient of a matrix product is again a matrix product,
#   of the upstream gradient with the *other* factor, one of them transposed. Write the shapes down: for each
#   answer only one arrangement gives the right shape, so the shapes choose for you.
# * `db2`, shape `(27,)`: `b2` is a single row of 27 numbers **broadcast** down all `n` rows of the batch, and its
#   gradient must come back to `(27,)`.
#
# Stuck? `hint("h")`, `hint("W2")`, `hint("b2")`

# %% nbgrader={"grade": false, "grade_id": "ex1_h", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dh = dlogits @ W2.T
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_h", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("h")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_h")
### END HIDDEN TESTS

# %% nbgrader={"grade": false, "grade_id": "ex1_W2", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dW2 = h.T @ dlogits
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_W2", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("W2")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_W2")
### END HIDDEN TESTS

# %% nbgrader={"grade": false, "grade_id": "ex1_b2", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
db2 = dlogits.sum(0)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_b2", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("b2")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_b2")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "hpreact_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dhpreact`, shape `(n, 64)`
# `h = torch.tanh(hpreact)` squashes every entry into the range from −1 to 1, each entry on its own. Both tensors are
# `(n, 64)`, so this is a rule applied element by element, with nothing to sum. Before you compute the tanh a second
# time, look at what the forward pass already gave you.
#
# Stuck? `hint("hpreact")`

# %% nbgrader={"grade": false, "grade_id": "ex1_hpreact", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dhpreact = (1.0 - h**2) * dh
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_hpreact", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("hpreact")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_hpreact")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "bngain_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dbngain`, `dbnbias`, `dbnraw`: scale and shift
# `hpreact = bngain * bnraw + bnbias` scales each of the 64 normalised hidden units by its own gain and shifts it by its
# own bias. `bnraw` is `(n, 64)`, one row per example; `bngain` and `bnbias` are `(1, 64)` rows, **broadcast** down
# all `n` rows so that every example uses the same gain and bias. The result `hpreact` is `(n, 64)`.
#
# * `dbngain`, shape `(1, 64)`: a factor of a product, stretched over the batch, so every row sends it gradient.
# * `dbnbias`, shape `(1, 64)`: a term of a sum, stretched over the batch like `bngain`.
# * `dbnraw`, shape `(n, 64)`: the other factor of the product. Here the factor beside it is the one that was
#   stretched, not `bnraw` itself: check whether anything needs summing at all.
#
# Stuck? `hint("bngain")`, `hint("bnbias")`, `hint("bnraw")`

# %% nbgrader={"grade": false, "grade_id": "ex1_bngain", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_bngain", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("bngain")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_bngain")
### END HIDDEN TESTS

# %% nbgrader={"grade": false, "grade_id": "ex1_bnbias", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dbnbias = dhpreact.sum(0, keepdim=True)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_bnbias", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("bnbias")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_bnbias")
### END HIDDEN TESTS

# %% nbgrader={"grade": false, "grade_id": "ex1_bnraw", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dbnraw = bngain * dhpreact
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_bnraw", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("bnraw")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_bnraw")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "bnvar_inv_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dbnvar_inv`, shape `(1, 64)`
# `bnvar_inv` holds one number per hidden unit: one over the standard deviation of that unit over the batch. It is
# used in `bnraw = bndiff * bnvar_inv`, which divides every column of `bndiff`, `(n, 64)`, by its standard deviation:
# the `(1, 64)` row is **broadcast** down the `n` rows of the batch. Its gradient must come back to `(1, 64)`.
#
# Stuck? `hint("bnvar_inv")`

# %% nbgrader={"grade": false, "grade_id": "ex1_bnvar_inv", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dbnvar_inv = (bndiff * dbnraw).sum(0, keepdim=True)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_bnvar_inv", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("bnvar_inv")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_bnvar_inv")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "bnvar_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dbnvar`, shape `(1, 64)`
# `bnvar_inv = (bnvar + 1e-5) ** -0.5` turns each variance into one over the standard deviation, entry by entry; the
# small `1e-5` keeps it away from a division by zero. Both tensors are `(1, 64)`: nothing broadcast, nothing to sum.
# It is a power again, as for `counts_sum`, only with another exponent and a constant added inside. Keep the `1e-5`
# where the forward pass had it.
#
# Stuck? `hint("bnvar")`

# %% nbgrader={"grade": false, "grade_id": "ex1_bnvar", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dbnvar = (-0.5 * (bnvar + 1e-5) ** -1.5) * dbnvar_inv
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_bnvar", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("bnvar")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_bnvar")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "bndiff2_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dbndiff2`, shape `(n, 64)`
# `bnvar = 1 / (n - 1) * bndiff2.sum(0, keepdim=True)` adds up each column of `bndiff2`, `(n, 64)`, over the batch and
# scales the `(1, 64)` result: the variance of each hidden unit. Every entry of a column enters its column's sum in the
# same way, so ask how much one entry moves the sum, and then the scale. Mind the scale: the variance divides by $n-1$
# (Bessel's correction, an unbiased estimate for a small batch), not by $n$. Your answer has the shape of `bndiff2`,
# `(n, 64)`, while `dbnvar` is a `(1, 64)` row.
#
# Stuck? `hint("bndiff2")`

# %% nbgrader={"grade": false, "grade_id": "ex1_bndiff2", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dbndiff2 = (1.0 / (n - 1)) * torch.ones_like(bndiff2) * dbnvar
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_bndiff2", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("bndiff2")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_bndiff2")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "bndiff_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dbndiff`, shape `(n, 64)`
# `bndiff`, the distance of each entry from its column's mean, is **used twice**:
#
# * in `bnraw = bndiff * bnvar_inv`, where it is multiplied by the `(1, 64)` row `bnvar_inv`, which is broadcast
#   down the batch (`bndiff` itself is already `(n, 64)` and is not stretched);
# * in `bndiff2 = bndiff**2`, which squares each entry on its own, `(n, 64)` to `(n, 64)`.
#
# Work out each branch with the shape `(n, 64)`, then add them.
#
# Stuck? `hint("bndiff")`

# %% nbgrader={"grade": false, "grade_id": "ex1_bndiff", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dbndiff = bnvar_inv * dbnraw
dbndiff += (2 * bndiff) * dbndiff2
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_bndiff", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("bndiff")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_bndiff")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "bnmeani_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dbnmeani`, shape `(1, 64)`
# `bnmeani` holds the batch mean of each hidden unit. It is used in `bndiff = hprebn - bnmeani`, which subtracts the
# `(1, 64)` row from every one of the `n` rows of `hprebn`, `(n, 64)`: the row is **broadcast** down the batch, and
# it is subtracted, so mind the sign. Its gradient must come back to `(1, 64)`.
#
# If you follow the lecture here: its line for this gradient sums without `keepdim=True` and so has shape `(64,)`.
# The lecture's comparison let that pass, since `(64,)` broadcasts like `(1, 64)`, but here a gradient has exactly its
# variable's shape, and a `(64,)` answer fails the shape check.
#
# Stuck? `hint("bnmeani")`

# %% nbgrader={"grade": false, "grade_id": "ex1_bnmeani", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dbnmeani = (-dbndiff).sum(0, keepdim=True)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_bnmeani", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("bnmeani")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_bnmeani")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "hprebn_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dhprebn`, shape `(n, 64)`
# `hprebn`, the hidden layer before batchnorm, is **used twice**:
#
# * in `bndiff = hprebn - bnmeani`, where it keeps its shape `(n, 64)`;
# * in `bnmeani = 1/n * hprebn.sum(0, keepdim=True)`, which averages each column over the batch into a `(1, 64)` row.
#   Every entry of a column takes part in its column's mean, in the same way.
#
# Work out each branch with the shape `(n, 64)`, then add them. (Exercise 3 asks for this same gradient again, in one
# expression that goes through the whole batchnorm layer at once.)
#
# Stuck? `hint("hprebn")`

# %% nbgrader={"grade": false, "grade_id": "ex1_hprebn", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dhprebn = dbndiff.clone()
dhprebn += (1.0 / n) * torch.ones_like(hprebn) * dbnmeani
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_hprebn", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("hprebn")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_hprebn")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "embcat_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dembcat`, `dW1`, `db1`: the first linear layer
# `hprebn = embcat @ W1 + b1` is the same kind of line as `logits = h @ W2 + b2`: the concatenated embeddings `embcat`,
# shape `(n, 30)`, times the weights `W1`, shape `(30, 64)`, plus the bias `b1`, shape `(64,)`, which is **broadcast**
# down the `n` rows; the result is `(n, 64)`. Its gradient `dhprebn`, `(n, 64)`, is all you need, with the shapes as
# your guide, exactly as for the second layer: `dembcat` is `(n, 30)`, `dW1` is `(30, 64)` and `db1` is `(64,)`.
#
# `db1` will come out as (nearly) zero. Batchnorm subtracts the batch mean right after this layer, which removes any
# constant added here, so `b1` cannot change the loss. It is still a good test of your sum.
#
# Stuck? `hint("embcat")`, `hint("W1")`, `hint("b1")`

# %% nbgrader={"grade": false, "grade_id": "ex1_embcat", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dembcat = dhprebn @ W1.T
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_embcat", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("embcat")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_embcat")
### END HIDDEN TESTS

# %% nbgrader={"grade": false, "grade_id": "ex1_W1", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dW1 = embcat.T @ dhprebn
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_W1", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("W1")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_W1")
### END HIDDEN TESTS

# %% nbgrader={"grade": false, "grade_id": "ex1_b1", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
db1 = dhprebn.sum(0)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_b1", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("b1")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_b1")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "emb_md", "locked": true, "schema_version": 3, "solution": false}
# ### `demb`, shape `(n, 3, 10)`
# `embcat = emb.view(emb.shape[0], -1)` lays the three 10-number embeddings of each example side by side: `emb`,
# `(n, 3, 10)`, becomes `embcat`, `(n, 30)`. The numbers are the same, only arranged in another shape; no arithmetic
# happens. So what does each number of `dembcat` tell you about the matching number of `emb`, and in what shape must
# `demb` come back?
#
# Stuck? `hint("emb")`

# %% nbgrader={"grade": false, "grade_id": "ex1_emb", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
demb = dembcat.view(emb.shape)
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_emb", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("emb")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_emb")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "C_md", "locked": true, "schema_version": 3, "solution": false}
# ### `dC`, shape `(27, 10)`
# `emb = C[Xb]` looks rows up in the embedding table `C`, `(27, 10)`: position `(i, j)` of `emb`, `(n, 3, 10)`, is a
# copy of the row of `C` for the character `Xb[i, j]`. In a batch, many rows of `C` are copied several times (the
# character `.` often is) and some are not copied at all. A row copied several times is a variable used several times,
# so it collects gradient from every one of its copies; a row never copied gets none. A plain Python loop over the
# `n × 3` positions is a fine way to write it.
#
# Stuck? `hint("C")`

# %% nbgrader={"grade": false, "grade_id": "ex1_C", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dC = torch.zeros_like(C)
for i in range(Xb.shape[0]):
    for j in range(Xb.shape[1]):
        dC[Xb[i, j]] += demb[i, j]
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex1_C", "locked": true, "points": 1, "schema_version": 3, "solution": false}
check("C")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex1_C")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "progress_md", "locked": true, "schema_version": 3, "solution": false}
# ### Where you stand
# Run this cell at any time. It never stops the notebook.

# %% nbgrader={"grade": false, "grade_id": "progress", "locked": true, "schema_version": 3, "solution": false}
progress()

# %% [markdown] nbgrader={"grade": false, "grade_id": "ex2_md", "locked": true, "schema_version": 3, "solution": false}
# # Exercise 2: cross-entropy in one go
#
# The 8 lines of the forward pass after `logits` (from `logit_maxes` to `loss`) are, together, just
# `F.cross_entropy(logits, Yb)`. Their combined gradient is remarkably simple. Derive it on paper for a single row:
# write the loss as $-\log \frac{e^{l_y}}{\sum_j e^{l_j}}$, differentiate with respect to one logit $l_i$, and treat
# $i = y$ and $i \ne y$ separately. Then remember that the batch loss is the *mean* of the rows.
#
# Write `dlogits`, shape `(n, 27)` like `logits`, in 3 lines or fewer, from `logits`, `Yb` and `n` alone.
# `F.softmax` and `F.log_softmax` are allowed (they compute values of the forward pass); `F.cross_entropy`,
# `F.nll_loss` and the tensors and gradients of Exercise 1 (`probs`, `counts`, `dlogprobs`, ...) are not: the grader
# refuses a cell that reads them, and `check("ex2")` names the line. A name you compute in the cell itself is yours,
# even if it is called `probs`. Its check, `check("ex2")`, grades this cell's answer
# alone: the `dlogits` of Exercise 1 does not count, and this cell is re-run with none of Exercise 1's gradients.
#
# Stuck? `hint("ex2")`

# %% nbgrader={"grade": false, "grade_id": "ex2_fast_loss", "locked": true, "schema_version": 3, "solution": false}
loss_fast = F.cross_entropy(logits, Yb)
print(loss_fast.item(), "difference from the exploded loss:", (loss_fast - loss).item())

# %% nbgrader={"grade": false, "grade_id": "ex2_logits", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
# What the gradient is: in each row, the predicted probabilities, minus 1 at the correct character, all over n
# (the loss is a mean). Gradient descent pulls the correct logit up, by 1 minus its probability, and pushes every
# other logit down, by its probability, each divided by n; the pushes and pulls in a row add up to exactly zero, and
# none is larger than 1/n in magnitude. In the picture below, the one dark square of each row is the correct
# character, the lighter ones the characters pushed down.
dlogits = F.softmax(logits, 1)
dlogits[range(n), Yb] -= 1
dlogits /= n
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex2_logits", "locked": true, "points": 2, "schema_version": 3, "solution": false}
check("ex2")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex2_logits")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "ex2_intuition", "locked": true, "schema_version": 3, "solution": false}
# Look at what your gradient *is*. The picture below is your `dlogits` on this notebook's batch: one row per
# example, one column per character. Before you run it, predict what you will see. In a row, which square stands
# out, and is its gradient positive or negative? What does that tell gradient descent to do to that logit, and to
# the others? How large can an entry be, given that the loss is the mean over the $n$ rows (the $1/n$)? What should
# each row add up to? (Think of what adding the same number to every logit of a row does to the probabilities.) The
# cell prints the largest row sum, so you can test the last guess. In the solutions notebook, the answer cell above
# explains the picture.

# %% nbgrader={"grade": false, "grade_id": "ex2_picture", "locked": true, "schema_version": 3, "solution": false}
if not UNDER_NBGRADER:  # the picture is for you; the grader has no screen
    plt.figure(figsize=(6, 6))
    plt.imshow(dlogits.detach(), cmap="gray")
    plt.title("dlogits: one row per example, one column per character")
    plt.xlabel("character (0 is '.', then a to z)")
    plt.ylabel("example in the batch")
    plt.show()
    print("largest row sum (should be about 0):", dlogits.detach().sum(1).abs().max().item())

# %% [markdown] nbgrader={"grade": false, "grade_id": "ex3_md", "locked": true, "schema_version": 3, "solution": false}
# # Exercise 3: batchnorm in one go
#
# The batchnorm layer, from `hprebn` to `hpreact`, is
#
# $$\mu = \frac{1}{n}\sum_i x_i,\qquad \sigma^2 = \frac{1}{n-1}\sum_i (x_i-\mu)^2,\qquad
#   \hat{x}_i = \frac{x_i - \mu}{\sqrt{\sigma^2 + \epsilon}},\qquad y_i = \gamma \hat{x}_i + \beta,$$
#
# for each of the 64 hidden units separately. Given `dhpreact`, write `dhprebn` in one expression.
#
# The shapes: `hprebn`, `bnraw` (that is $\hat{x}$), `dhpreact` and your answer are `(n, 64)`; `bngain` ($\gamma$)
# and `bnvar_inv` ($1/\sqrt{\sigma^2+\epsilon}$) are `(1, 64)` rows, broadcast down the batch. A sum over the batch,
# `.sum(0)`, gives a `(64,)` vector, and `.sum(0, keepdim=True)` a `(1, 64)` row; inside this formula both broadcast
# down the batch the same way, so either is fine.
#
# How to get there: for one hidden unit, $x_i$ influences the loss along three paths: directly through
# $\hat{x}_i$, through $\mu$ (which every $\hat{x}_j$ uses), and through $\sigma^2$ (which every $\hat{x}_j$ uses
# too). Write $\frac{\partial L}{\partial x_i}$ as the sum of those three paths, using $\frac{\partial L}{\partial
# \hat{x}_j} = \gamma\,\frac{\partial L}{\partial y_j}$. One piece vanishes: $\mu$ also reaches the loss *through
# $\sigma^2$*, but that contribution is zero, because $\frac{\partial \sigma^2}{\partial \mu} =
# -\frac{2}{n-1}\sum_i (x_i-\mu)$ and the deviations from the mean sum to zero. Then collect the terms, and watch the
# $n$ versus $n-1$: the mean divides by $n$, the variance by $n-1$.
#
# You may use `hprebn`, `bngain`, `bnvar_inv`, `bnraw`, `dhpreact` and `n`, and what you compute from them in the
# cell. Not `F.batch_norm`, and not the other tensors or gradients of Exercise 1 (`bnmeani`, `bnvar`, `dbnraw`, ...):
# the grader refuses a cell that reads them, and `check("ex3")` names the line. Its check, `check("ex3")`,
# grades this cell's answer alone: the `dhprebn` of Exercise 1 does not count, and of Exercise 1's gradients this
# cell is re-run with `dhpreact` only.
#
# Stuck? `hint("ex3")`

# %% nbgrader={"grade": false, "grade_id": "ex3_fast_forward", "locked": true, "schema_version": 3, "solution": false}
hpreact_fast = bngain * (hprebn - hprebn.mean(0, keepdim=True)) / torch.sqrt(
    hprebn.var(0, keepdim=True, unbiased=True) + 1e-5) + bnbias
print("max difference from the exploded forward pass:", (hpreact_fast - hpreact).abs().max().item())

# %% nbgrader={"grade": false, "grade_id": "ex3_hprebn", "locked": false, "schema_version": 3, "solution": true}
### BEGIN SOLUTION
dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))
### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex3_hprebn", "locked": true, "points": 2, "schema_version": 3, "solution": false}
check("ex3")
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex3_hprebn")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "ex4_md", "locked": true, "schema_version": 3, "solution": false}
# # Exercise 4: train with your own backward pass
#
# Time to put it together. Below is the forward pass of a fresh, wider network (`n_hidden = 200`), written
# compactly, returning the loss and a `cache` of the intermediates you will need. Write `manual_backward(parameters,
# cache)`: it returns the gradients of the loss, as a list in the order of `parameters`:
# `[dC, dW1, db1, dW2, db2, dbngain, dbnbias]`.
#
# Use Exercise 2 for `dlogits` and Exercise 3 for `dhprebn`; the rest is Exercise 1. Take the batch size from the
# cache (`cache["Xb"].shape[0]`), because this function will also be called on other batches. The cell after it
# compares your function with autograd on one batch before the training loop uses it.
#
# Speed matters a little now: the function runs 200,000 times. Indexing with a Python `range` (`x[range(n), Yb]`)
# is slow; `F.one_hot` or `torch.arange(n)` does the same job many times faster. Give `F.one_hot` its
# `num_classes=vocab_size`: without it, it makes only as many columns as the largest index in `Yb` plus one, so a
# batch whose targets miss the last character (`z`, which most batches do) gets fewer than 27 columns, and the
# subtraction from the `(n, 27)` softmax stops with a size mismatch.
#
# Stuck? `hint("ex4")`

# %% nbgrader={"grade": false, "grade_id": "ex4_forward", "locked": true, "schema_version": 3, "solution": false}
def forward(parameters, Xb, Yb):
    """The same network, compactly. Returns the loss and the intermediates a backward pass needs."""
    # Fused calls where they save time in a loop of 200,000 steps: torch.addmm(b, x, W) is x @ W + b, and
    # torch.addcmul(c, a, b) is c + a * b. The numbers are those of the step-by-step forward pass above.
    C, W1, b1, W2, b2, bngain, bnbias = parameters
    emb = C[Xb]
    embcat = emb.view(emb.shape[0], -1)
    hprebn = torch.addmm(b1, embcat, W1)
    bnmeani = hprebn.mean(0, keepdim=True)
    bndiff = hprebn - bnmeani
    bnvar = (bndiff**2).sum(0, keepdim=True) / (Xb.shape[0] - 1)  # as hprebn.var(0), which is slower here
    bnvar_inv = (bnvar + 1e-5) ** -0.5
    bnraw = bndiff * bnvar_inv
    hpreact = torch.addcmul(bnbias, bngain, bnraw)
    h = torch.tanh(hpreact)
    logits = torch.addmm(b2, h, W2)
    loss = F.cross_entropy(logits, Yb)
    cache = dict(Xb=Xb, Yb=Yb, emb=emb, embcat=embcat, hprebn=hprebn, bnmeani=bnmeani, bnvar=bnvar,
                 bnvar_inv=bnvar_inv, bnraw=bnraw, hpreact=hpreact, h=h, logits=logits)
    return loss, cache


def init_parameters(n_hidden, seed=2147483647):
    g = torch.Generator().manual_seed(seed)
    fan_in = n_embd * block_size
    return [
        torch.randn((vocab_size, n_embd), generator=g),
        torch.randn((fan_in, n_hidden), generator=g) * (5 / 3) / fan_in**0.5,
        torch.randn(n_hidden, generator=g) * 0.1,
        torch.randn((n_hidden, vocab_size), generator=g) * 0.1,
        torch.randn(vocab_size, generator=g) * 0.1,
        torch.randn((1, n_hidden), generator=g) * 0.1 + 1.0,
        torch.randn((1, n_hidden), generator=g) * 0.1,
    ]

# %% nbgrader={"grade": false, "grade_id": "ex4_backward", "locked": false, "schema_version": 3, "solution": true}
def manual_backward(parameters, cache):
    """Return [dC, dW1, db1, dW2, db2, dbngain, dbnbias] for the loss of forward(parameters, Xb, Yb)."""
    ### BEGIN SOLUTION
    C, W1, b1, W2, b2, bngain, bnbias = parameters
    Xb, Yb, h, bnraw = cache["Xb"], cache["Yb"], cache["h"], cache["bnraw"]
    n = Xb.shape[0]  # this call's batch size
    dlogits = (F.softmax(cache["logits"], 1) - F.one_hot(Yb, num_classes=vocab_size)) / n
    dW2, db2 = h.T @ dlogits, dlogits.sum(0)
    dhpreact = (1.0 - h**2) * (dlogits @ W2.T)
    dbngain = (bnraw * dhpreact).sum(0, keepdim=True)
    dbnbias = dhpreact.sum(0, keepdim=True)
    # Exercise 3's formula; its two batch sums are exactly dbnbias and dbngain, so reuse them
    dhprebn = bngain * cache["bnvar_inv"] / n * (n * dhpreact - dbnbias - n / (n - 1) * bnraw * dbngain)
    dW1, db1 = cache["embcat"].T @ dhprebn, dhprebn.sum(0)
    demb = (dhprebn @ W1.T).view(cache["emb"].shape)
    dC = torch.zeros_like(C).index_add_(0, Xb.view(-1), demb.view(-1, C.shape[1]))
    return [dC, dW1, db1, dW2, db2, dbngain, dbnbias]
    ### END SOLUTION

# %% nbgrader={"grade": true, "grade_id": "test_ex4_backward", "locked": true, "points": 2, "schema_version": 3, "solution": false}
check_backward()
### BEGIN HIDDEN TESTS
from backprop_ninja.hidden import grade_unit; assert grade_unit("ex4_backward")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "train_md", "locked": true, "schema_version": 3, "solution": false}
# ## Training
#
# 200,000 steps of minibatch gradient descent with *your* gradients: learning rate 0.1, then 0.01 for the second half.
# On a laptop CPU this takes a few minutes. To try a short run first, set `max_steps` in the next cell to a small
# number such as 2000 and run it (this works on Colab too). Validate and the autograder always train on a short
# schedule of their own, whatever you set here.
#
# **What to expect.** With a correct backward pass the evaluation below prints a validation loss of about 2.11 after
# the full schedule (train loss about 2.07, as in the lecture), about 2.36 after a short run of 2,000 steps, and about
# 2.42 after the 1,000 steps of Validate and the autograder. A run that ends clearly higher than that, or whose loss
# stops falling early, points to a gradient that is still off.

# %%
max_steps = int(os.environ.get("BACKPROP_NINJA_STEPS") or 200_000)  # e.g. max_steps = 2000 for a short first run

# %% nbgrader={"grade": false, "grade_id": "train", "locked": true, "schema_version": 3, "solution": false}
if UNDER_NBGRADER:  # Validate and the autograder: a short schedule, whatever max_steps says above
    max_steps = int(os.environ.get("BACKPROP_NINJA_STEPS") or 1000)
decay_step = max_steps // 2  # 100,000 on the full schedule
torch.set_num_threads(1)  # tiny matrices: more threads only add overhead

parameters = init_parameters(n_hidden=200)
gen = torch.Generator().manual_seed(2147483647)
lossi = []
with torch.inference_mode():  # no autograd anywhere (the gradients are yours), and less overhead than no_grad
    for step in tqdm(range(max_steps), mininterval=2):
        ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=gen)
        loss, cache = forward(parameters, Xtr[ix], Ytr[ix])
        grads = manual_backward(parameters, cache)
        lr = 0.1 if step < decay_step else 0.01
        for p, grad in zip(parameters, grads):
            p.add_(grad, alpha=-lr)  # p -= lr * grad, in one operation instead of two
        lossi.append(loss)  # kept as tensors: calling .item() every step would slow the loop down

if not UNDER_NBGRADER:  # the plot is for you; the grader has no screen
    chunk = max(1, max_steps // 200)  # average the loss over chunks of this many steps
    plt.plot(torch.stack(lossi[: len(lossi) // chunk * chunk]).log10().view(-1, chunk).mean(1))
    plt.xlabel(f"step (x {chunk})")
    plt.ylabel("log10 loss, averaged")
    plt.title("training loss")
    plt.show()

# %% [markdown] nbgrader={"grade": false, "grade_id": "eval_md", "locked": true, "schema_version": 3, "solution": false}
# ## Calibrate batchnorm, evaluate, sample
#
# At training time batchnorm uses the statistics of each minibatch. To use the network on one example at a time we
# replace them by the mean and variance over the whole training set, computed once.

# %% nbgrader={"grade": false, "grade_id": "eval", "locked": true, "schema_version": 3, "solution": false}
C, W1, b1, W2, b2, bngain, bnbias = parameters
Xcal = Xtr[:20_000] if UNDER_NBGRADER else Xtr  # under nbgrader, a sample of the training set is enough and faster
with torch.no_grad():
    hpre_all = C[Xcal].view(Xcal.shape[0], -1) @ W1 + b1
    bnmean_all = hpre_all.mean(0, keepdim=True)
    bnvar_all = hpre_all.var(0, keepdim=True, unbiased=True)


@torch.no_grad()
def split_loss(X, Y):
    hpre = C[X].view(X.shape[0], -1) @ W1 + b1
    h = torch.tanh(bngain * (hpre - bnmean_all) * (bnvar_all + 1e-5) ** -0.5 + bnbias)
    return F.cross_entropy(h @ W2 + b2, Y).item()


print(f"train loss {split_loss(Xcal, Ytr[:Xcal.shape[0]]):.4f}")
print(f"val loss   {split_loss(Xdev, Ydev):.4f}")

gen = torch.Generator().manual_seed(2147483647 + 10)
for _ in range(20):
    out, context = [], [0] * block_size
    while True:
        with torch.no_grad():
            hpre = C[torch.tensor([context])].view(1, -1) @ W1 + b1
            h = torch.tanh(bngain * (hpre - bnmean_all) * (bnvar_all + 1e-5) ** -0.5 + bnbias)
            probs = F.softmax(h @ W2 + b2, dim=1)
        ix = torch.multinomial(probs, num_samples=1, generator=gen).item()
        context = context[1:] + [ix]
        if ix == 0:
            break
        out.append(itos[ix])
    print("".join(out))
