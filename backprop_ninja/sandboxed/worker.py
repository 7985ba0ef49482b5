"""The worker's side of the grader: run answer cells on the replays and send back what they define.

Runs only in a worker (spawner.py), which never holds a reference gradient other than the upstream
ones the grader sends for the unit at hand. Each replay has its own namespace, kept across units so
helpers defined in one answer cell work in the next. Standalone on purpose (torch and numpy only):
inside the sandbox the kit's other modules, whose table holds every answer, are not there. What it
must know of the table (names, not formulas) comes from the grader as `Meta`.

A job is one unit, in one of two modes:
- "graded": reset the replay's variables, delete every gradient name (d<var>) and every name we
  injected before, inject the upstream gradients that came with the job, run the cell, and send
  the answer (float64 bytes) or what went wrong (exception type and message, no traceback);
  A graded job may carry a "probe" (the grader's rule probe, Session.probe): once the cell answered on every
  replay, one more run on one replay with some upstream gradients replaced by the grader's random ones (the job's
  last arrays), in a throwaway copy of that replay's state; its answer comes after the others.
- "history": just run the cell, as the notebook would, to rebuild helpers in a fresh worker.
  Nothing is injected and nothing is sent but "done".
"""
from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import blocks
from .blocks import CALLS as AUTOGRAD_CALLS
from .wire import encode_frame, read_frame_blocking

MAX_ANSWER_ELEMENTS = 1 << 20  # far above any gradient of the network; bigger answers are not sent
MAX_MESSAGE_CHARS = 300        # of an exception's text: enough to explain, too short to carry a file out
GRAPH = "something whose answer requires grad or has a grad_fn"  # _to_float64's word for autograd's machinery
EX4_CACHE = ("Xb", "Yb", "emb", "embcat", "hprebn", "bnmeani", "bnvar", "bnvar_inv", "bnraw", "hpreact", "h", "logits")
EX4_CACHE_ALIASES = {"bnmean": "bnmeani"}  # releases made before Exercise 4 took Exercise 1's name for the mean


@dataclass(frozen=True)
class Meta:
    """What the worker knows of the units table: names and constants only, sent by the grader."""
    gradient_names: frozenset[str]      # every d<var> of Exercise 1 and Exercise 4's returns
    ex4_returns: tuple[str, ...]        # what manual_backward returns, in order
    parameter_names: tuple[str, ...]    # the order of manual_backward's `parameters`
    constants: dict                     # vocab_size, block_size, n_embd

    @classmethod
    def from_dict(cls, data: dict) -> "Meta":
        return cls(frozenset(data["gradient_names"]), tuple(data["ex4_returns"]), tuple(data["parameter_names"]),
                   dict(data["constants"]))

def serve(replays: list[dict[str, torch.Tensor]], meta: Meta, sock: socket.socket,
          copies: list[dict[str, torch.Tensor]] | None = None) -> None:
    """The worker's loop: one job in, one record out, until the grader hangs up."""
    blocks.lock_down()  # done once in the sandbox host before it forked; an unisolated worker does it here
    me = os.getpid()
    session = Session(replays, meta, copies)
    while True:
        frame = read_frame_blocking(sock)
        if frame is None:
            return
        header, arrays = frame
        record, answers = session.run(header, arrays)
        if os.getpid() != me:
            os._exit(0)  # a process the student forked must never talk to the grader
        sock.sendall(encode_frame(dict(record, pid=me, seq=header["seq"]), answers))


class Session:
    """`copies`, if given, are unchanged clones of the replays' tensors made by the sandbox host before it forked
    (host.py): they are handed out first, as _copy's last copies, so a fresh worker clones nothing until a cell
    changes one. In a worker they are its own pages (copy on write), as a clone made here would be."""

    def __init__(self, replays: list[dict[str, torch.Tensor]], meta: Meta,
                 copies: list[dict[str, torch.Tensor]] | None = None):
        self.replays, self.meta = replays, meta
        # Set once, not before every cell: a helper of the same name that the student defines wins, as in Jupyter.
        self.namespaces: list[dict] = [notebook_stand_ins() for _ in replays]
        self.injected: list[dict[str, torch.Tensor]] = [{} for _ in replays]
        self.made: list[dict[str, object]] = [{} for _ in replays]  # gradient names the student's code set
        self.references: list[dict[str, torch.Tensor]] = [{} for _ in replays]  # as sent by the grader
        # name -> (the copy handed to the cells last, its version then, what it copies): see _copy
        self.handed: list[dict[str, tuple[torch.Tensor, int, torch.Tensor]]] = [{} for _ in replays]
        self.fresh: list[dict | None] = [None for _ in replays]  # what _replay_variables hands out, kept up to date
        for r, given in enumerate(copies or ()):
            self.handed[r].update({name: (copy, copy._version, replays[r][name]) for name, copy in given.items()})

    def run(self, header: dict, arrays: list[np.ndarray]) -> tuple[dict, list[np.ndarray]]:
        """One job on the replays it lists (header["replays"], indices into the box's replays; default all)."""
        unit = Job(header["unit"], header["answer"], header["exercise"])
        graded = header["mode"] == "graded"
        probe = header.get("probe") if graded else None
        if probe:  # the rule probe's random upstreams come last
            cut = len(arrays) - len(probe["override"])
            arrays, probe_arrays = arrays[:cut], arrays[cut:]
        indices = [int(r) for r in header.get("replays", range(len(self.replays)))]
        upstream = self._receive_references(header, arrays, indices)
        try:
            code = compile(header["source"], f"<answer cell {unit.grade_id}>", "exec")
        except (SyntaxError, ValueError) as error:
            return {"outcomes": [_raised(error)] * len(indices) if graded else []}, []
        prelude = _compile_definitions(header.get("prelude", ()), unit.grade_id)
        outcomes, answers = [], []
        for k, r in enumerate(indices):
            with default_dtype_of(self.replays[r]):
                outcome, arrays_r = self._run_on_replay(unit, code, r, upstream[k] if graded else {}, graded,
                                                        prelude)
            if graded:
                outcomes.append(outcome)
                answers += arrays_r
        if probe and all(o.get("kind") == "answer" for o in outcomes):
            probed, probe_answers = self.probe({**probe, "answer": unit.answer}, probe_arrays)
            return {"outcomes": outcomes, "probe": probed["outcomes"][0]}, answers + probe_answers
        return {"outcomes": outcomes}, answers

    def _receive_references(self, header: dict, arrays: list[np.ndarray],
                            indices: list[int]) -> list[dict[str, torch.Tensor]]:
        """Store the references that came with this job; return fresh copies of those this unit may use."""
        kept_for = [self.references[r] for r in indices]
        for kept, new in zip(kept_for, _split_arrays(header.get("new", []), arrays)):
            kept.update(new)
        return [{name: self._copy(r, name, kept[name]) for name in names if name in kept}
                for r, kept, names in zip(indices, kept_for, header.get("upstream", []))]

    def _run_on_replay(self, unit: "Job", code, r: int, upstream: dict, graded: bool, prelude: list = ()):
        ns = self.namespaces[r]
        fresh = self._replay_variables(r)
        ns.update(fresh)
        asked_before = _run_definitions(prelude, ns, fresh) if prelude else []
        if graded:
            kept = self.made[r].get(unit.answer) if unit.exercise == 1 else None
            for name in self.meta.gradient_names | set(self.injected[r]):
                ns.pop(name, None)
            if kept is not None:
                ns[unit.answer] = kept  # the student's own partial d<var> from an earlier cell
            ns.update(upstream)
            self.injected[r] = upstream
        error = _execute(code, ns)
        self._remember_made(r)
        if asked_before or AUTOGRAD_CALLS:
            return {"kind": "autograd", "call": (asked_before or AUTOGRAD_CALLS)[0]}, []
        if error is not None:
            return _raised(error), []
        if not graded:
            return None, []
        if unit.exercise == 4:
            return _call_manual_backward(ns, self.replays[r], self.meta)
        return _read_answer(ns, unit.answer)

    def _replay_variables(self, r: int) -> dict:
        """replay_variables with the copies of _copy, made once per replay: after that, a run only re-clones the
        tensors whose version moved (the check of 29 versions is inlined: it runs before every run of every cell)."""
        fresh = self.fresh[r]
        if fresh is None:
            fresh = self.fresh[r] = replay_variables(self.replays[r], self.meta,
                                                     copy=lambda name, t: self._copy(r, name, t))
            return fresh
        handed = self.handed[r]
        for name in self.replays[r]:
            copy, version, source = handed[name]
            if copy._version != version:
                fresh[name] = self._copy(r, name, source)
        return fresh

    def _copy(self, r: int, name: str, source: torch.Tensor) -> torch.Tensor:
        """A copy of `source` (a replay's tensor or a reference) for the cells of replay r, so that a cell that
        changes it in place spoils nothing for the next: the copy handed out last time if no cell has changed it
        since, else a new clone. Every in-place operation of torch moves a tensor's version counter (through a view
        too); writes that bypass it (`.data`, `.numpy()`) reach only later runs of this student's own cells, as
        they would in the notebook. (Cloning 29 tensors and every upstream before each run of each cell was about
        a tenth of a submission's time.)"""
        last = self.handed[r].get(name)
        if last is not None and last[2] is source and last[0]._version == last[1]:
            return last[0]
        copy = source.clone()
        self.handed[r][name] = (copy, copy._version, source)
        return copy

    def probe(self, header: dict, arrays: list[np.ndarray]) -> tuple[dict, list[np.ndarray]]:
        """The grader's rule probe: run header["cells"] in order on one replay, like graded jobs, but with the
        gradients named in header["override"] replaced by the arrays that came with the job (random ones), and
        send back the last cell's answer. The earlier cells are those that start the unit's gradient (the lecture's
        `dcounts = ...` in one cell, `dcounts += ...` in a later one), so their part follows the same upstream.

        It runs in a throwaway state: tensors are cloned, the replay's namespace and records are put back after,
        and the override is never stored as a reference, so the units graded after see nothing of the probe."""
        r = int(header["replay"])
        override = {name: torch.from_numpy(a.copy()) for name, a in zip(header["override"], arrays)}
        ns, made, injected = self.namespaces[r], self.made[r], self.injected[r]
        saved_ns = dict(ns)
        # the replay's own tensors come as unchanged copies with every run (_copy): clone only the rest, each tensor
        # once (a name in ns and the same tensor in made share one clone, as they shared the tensor)
        clones: dict[int, torch.Tensor] = {}

        def clone(value):
            if not isinstance(value, torch.Tensor):
                return value
            if id(value) not in clones:
                clones[id(value)] = value.clone()
            return clones[id(value)]

        ns.update({k: clone(v) for k, v in ns.items() if isinstance(v, torch.Tensor) and k not in self.replays[r]})
        self.made[r] = {k: clone(v) for k, v in made.items()
                        if k != header["answer"]}  # the unit's own answer from its graded run is no partial
        try:
            outcome, answers = {"kind": "invalid", "message": "nothing to run"}, []
            for cell in header["cells"]:
                job = Job(cell["unit"], cell["answer"], 1)
                try:
                    code = compile(cell["source"], f"<answer cell {job.grade_id}>", "exec")
                except (SyntaxError, ValueError) as error:
                    return {"outcomes": [_raised(error)]}, []
                upstream = {name: (override[name] if name in override else self.references[r][name]).clone()
                            for name in cell["upstream"] if name in override or name in self.references[r]}
                prelude = _compile_definitions(cell.get("prelude", ()), job.grade_id)
                outcome, answers = self._run_on_replay(job, code, r, upstream, True, prelude)
                if outcome.get("kind") != "answer":
                    break
            return {"outcomes": [outcome]}, answers
        finally:
            ns.clear()
            ns.update(saved_ns)
            self.made[r], self.injected[r] = made, injected

    def _remember_made(self, r: int) -> None:
        ns, injected = self.namespaces[r], self.injected[r]
        for name in self.meta.gradient_names:
            value = ns.get(name)
            if value is not None and value is not injected.get(name):
                self.made[r][name] = value


@dataclass(frozen=True)
class Job:
    grade_id: str
    answer: str      # the name the cell must define (d<var>, or manual_backward)
    exercise: int


@contextlib.contextmanager
def default_dtype_of(values: dict[str, torch.Tensor]):
    """Torch's default dtype set to the replay's while a cell runs on it: float64 on the grader's stress replay
    (its values are float64), so `torch.zeros(n, 27)` or `torch.tensor(0.5)` in the cell is float64 like the
    inputs, and float32 elsewhere, as in the notebook. The previous default comes back afterwards, whatever the
    cell did, so a cell's `torch.set_default_dtype` reaches neither the other replays nor the grader's code."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64 if values["W1"].dtype == torch.float64 else torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def replay_variables(values: dict[str, torch.Tensor], meta: Meta, copy=lambda name, t: t.clone()) -> dict:
    """What a cell sees: copies of the replay's tensors (so a cell that changes one in place cannot spoil
    later units; `copy(name, tensor)` makes them), the notebook's constants, torch and F."""
    fresh = {name: copy(name, t) for name, t in values.items()}
    n = values["Xb"].shape[0]
    fresh.update(torch=torch, F=F, n=n, batch_size=n, n_hidden=values["W1"].shape[1], **meta.constants)
    return fresh


def notebook_stand_ins() -> dict:
    """The notebook's helpers that an answer cell may call to look at its work (`check("probs")`, `progress()`,
    `hint("probs")`, `show_graph()`, ...): here they do nothing and return None, so such a call costs no point.
    The real ones compare with autograd, which a replay does not have. `finite_difference` stays forbidden (the
    static scan reports it): calling it here counts as asking for the gradient. `plt` and `display` absorb plots.
    (They come from blocks.py, whose student-facing functions lead to nothing of the worker.)"""
    helpers = ("check", "progress", "hint", "show_graph", "draw_progress", "check_backward", "display")
    return {**{name: blocks.does_nothing for name in helpers}, "finite_difference": blocks.finite_difference,
            "plt": blocks.Ignored()}


def _compile_definitions(sources, grade_id: str) -> list:
    """The definitions from the student's added cells (one statement each, chosen by the grader's
    definitions.py), compiled; one that does not compile alone is left out."""
    compiled = []
    for source in sources:
        try:
            compiled.append(compile(str(source), f"<a cell you added, before {grade_id}>", "exec"))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
    return compiled


def _run_definitions(prelude: list, ns: dict, fresh: dict) -> list[str]:
    """Run the added cells' definitions in the replay's namespace; return what they asked of autograd.

    One that raises is skipped, as its name would be missing in the notebook too (the answer that uses it says
    so). The replay's own variables are put back afterwards: an added cell's `h = 1e-3` must not replace the
    replay's h."""
    asked = []
    for code in prelude:
        _execute(code, ns)
        asked += AUTOGRAD_CALLS
    ns.update(fresh)
    return asked


def _execute(code, ns: dict) -> BaseException | None:
    AUTOGRAD_CALLS.clear()
    try:
        exec(code, ns)
    except BaseException as error:  # SystemExit and KeyboardInterrupt are the student's too
        return error
    finally:
        blocks.left_grad_mode_on()
    return None


def _call_manual_backward(ns: dict, values: dict[str, torch.Tensor], meta: Meta):
    function = ns.get("manual_backward")
    if not callable(function):
        return _invalid("your cell did not define a function manual_backward(parameters, cache)"), []
    parameters = [values[name].clone() for name in meta.parameter_names]
    cache = {name: values[name].clone() for name in EX4_CACHE}
    cache.update({old: cache[new] for old, new in EX4_CACHE_ALIASES.items()})
    AUTOGRAD_CALLS.clear()
    try:
        grads = function(parameters, cache)
    except BaseException as error:
        blocks.left_grad_mode_on()
        if AUTOGRAD_CALLS:
            return {"kind": "autograd", "call": AUTOGRAD_CALLS[0]}, []
        return _raised(error, "manual_backward"), []
    blocks.left_grad_mode_on()
    if AUTOGRAD_CALLS:
        return {"kind": "autograd", "call": AUTOGRAD_CALLS[0]}, []
    expected = ", ".join(meta.ex4_returns)
    if not isinstance(grads, (list, tuple)):
        return _invalid(f"manual_backward returned {_a(grads)}; it must return a list of 7 tensors "
                        f"({expected}), in the order of parameters"), []
    if len(grads) != len(meta.ex4_returns):
        return _invalid(f"manual_backward returned {len(grads)} items; it must return 7 tensors "
                        f"({expected}), in the order of parameters"), []
    arrays = []
    for name, grad in zip(meta.ex4_returns, grads):
        array, problem = _to_float64(grad, f"{name} (as returned by manual_backward)")
        if problem:
            return _unusable(problem), []
        arrays.append(array)
    return {"kind": "answer"}, arrays


def _read_answer(ns: dict, name: str):
    if name not in ns:
        return _invalid(f"your cell did not define {name}"), []
    array, problem = _to_float64(ns[name], name)
    if problem:
        return _unusable(problem), []
    return {"kind": "answer"}, [array]


def _to_float64(value, name: str) -> tuple[np.ndarray | None, str | None]:
    if not isinstance(value, torch.Tensor):
        return None, f"{name} is {_a(value)}, not a tensor"
    if blocks.tracks_gradients(value):
        return None, GRAPH
    if value.numel() > MAX_ANSWER_ELEMENTS:
        return None, f"{name} has shape {tuple(value.shape)}, far larger than any gradient of the network"
    try:
        array = value.detach().to(device="cpu", dtype=torch.float64).resolve_conj().resolve_neg()
        return array.contiguous().numpy(), None
    except Exception as error:  # sparse, meta, or a tensor subclass that misbehaves
        return None, f"{name} could not be read as numbers ({type(error).__name__})"


def _split_arrays(names_per_replay: list[list[str]], arrays: list[np.ndarray]) -> list[dict[str, torch.Tensor]]:
    out, i = [], 0
    for names in names_per_replay:
        out.append({name: torch.from_numpy(arrays[i + k].copy()) for k, name in enumerate(names)})
        i += len(names)
    return out


def _raised(error: BaseException, where: str = "your cell") -> dict:
    try:
        message = str(error)
    except Exception:
        message = ""
    return {"kind": "raised", "type": type(error).__name__[:80], "where": where,
            "message": message[:MAX_MESSAGE_CHARS]}


def _unusable(problem: str) -> dict:
    """An answer the grader cannot take: one out of autograd's machinery is autograd, anything else invalid."""
    if problem == GRAPH:
        return {"kind": "autograd", "call": GRAPH}
    return _invalid(problem)


def _invalid(message: str) -> dict:
    return {"kind": "invalid", "message": message}


def _a(value) -> str:
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
