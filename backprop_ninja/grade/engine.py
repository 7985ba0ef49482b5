"""Grade one notebook: extract the answer cells, scan them, replay them in a sandbox, compare, verdict.

The order matters for secrecy: the replay inputs are built, then a box (a spawner, in its own PID
namespace when isolated) is opened, and only then does this process compute autograd's reference
gradients. Every process that runs student code descends from a spawner, so none of them ever holds
an answer. Boxes come from a launcher (isolation.py, the only place that starts student code).
"""
from __future__ import annotations

import ast
import functools
import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from backprop_ninja import model, units
from backprop_ninja.grade import (allowlist, compare, definitions, evidence, extract, isolation, one_go, probe,
                                  records, sandbox, static, syntax)
from backprop_ninja.grade.limits import MEMORY_LIMIT, TOTAL_TIMEOUT, UNIT_TIMEOUT
from backprop_ninja.grade.verdict import (ALLOWLIST_CODE, CODE_POLICIES, CRASHED, ERROR, LENIENT_RULES, LENIENT_SHAPE,
                                          MISSING, NOT_ALLOWED, OK, RIGHT_BY_LUCK, SHAPE_POLICIES, STRICT_RULES,
                                          STRICT_SHAPE, TIMEOUT, USES_AUTOGRAD, WRONG, SubmissionResult, Verdict)

# (seed, n) of the replays: the notebook's own run first, then fresh batches of 32, 17 and 50 rows. The fresh
# seeds here are examples (tests use them); every grading draws its own, see replay_plans.
REPLAYS: tuple[tuple[int, int], ...] = ((model.NOTEBOOK_SEED, 32), (101, 32), (202, 17), (303, 50))
# (seed, n, variant) of the replays built to expose near-misses, after the ones above in both sets; their seeds are
# fresh in every grading too. One replay has it all: the stress conditions of model.stress_parameters (a batchnorm
# column of tiny variance, tied and large logits), in float64, where the student's code runs in float64 and is
# judged with a tolerance near float64 rounding (compare.ATOL_FLOAT64). A stress replay in float32 and a float64
# one apart cost twice as much, for no verdict more (docs/benchmarks.md); (s, 32, model.STRESS) and
# (s, 32, model.FLOAT64) still work here.
SPECIAL_REPLAYS: tuple[tuple[int, int, str], ...] = ((404, 32, model.STRESS64),)
SEED_ENV = "BACKPROP_NINJA_REPLAY_SEED"  # set it to make a grading's fresh seeds repeatable

MISMATCH_MAX_SIDE = 64
ONE_GO_RULES = units.one_go_rules()  # what Exercises 2 and 3 may read (grade/one_go.py)
MAX_STUDENT_TEXT = 300  # characters of an exception's text (the student's) that reach a result


class EnvironmentProblem(RuntimeError):
    """The reference answers do not score full here: the machine, not a student, is at fault."""


class MachineFault(EnvironmentProblem):
    """A box failed under a submission in a way no cell can cause (it could not be opened, a worker could not be
    started, the spawner died): no verdict is given, the submission is to be graded again (the batch does)."""


_shared_launcher: isolation.Launcher | None = None


def shared_launcher() -> isolation.Launcher:
    """The launcher of callers that name none (tests, the hidden hook): isolated where possible, started once."""
    global _shared_launcher
    if _shared_launcher is None:
        import atexit

        _shared_launcher = isolation.start(isolation.PREFERRED)
        atexit.register(_shared_launcher.close)
    return _shared_launcher


def grade_notebook(path: str | Path, *, unit_timeout: float = UNIT_TIMEOUT, total_timeout: float = TOTAL_TIMEOUT,
                   memory_limit_bytes: int = MEMORY_LIMIT, launcher: isolation.Launcher | None = None,
                   check_environment: bool = True, strict_rules: bool = False,
                   shape: str = STRICT_SHAPE, code: str = ALLOWLIST_CODE,
                   shared: SharedDraw | None = None) -> SubmissionResult:
    """One verdict per unit of units.UNITS, in table order. Never raises for anything the file holds;
    raises EnvironmentProblem (or isolation.IsolationUnavailable) when the machine cannot grade.
    strict_rules: an answer right by luck (probe.py) earns no points; by default it keeps them, with a note.
    shape: "lenient" accepts an intermediate's gradient whose shape differs only by size-1 dimensions (see
    apply_shape_policy); "strict", the default, does not.
    code: "allowlist", the default, refuses (not_allowed) any answer cell or added-cell definition outside what a
    gradient needs (allowlist.py); "any" lets any Python through to the autograd scan and the run-time blocks.
    shared: a draw of seeds to take the replays from (a batch worker's, see SharedDraw); by default a fresh one."""
    if shape not in SHAPE_POLICIES:
        raise ValueError(f"shape policy {shape!r}: choose one of {', '.join(SHAPE_POLICIES)}")
    if code not in CODE_POLICIES:
        raise ValueError(f"code policy {code!r}: choose one of {', '.join(CODE_POLICIES)}")
    syntax.forget()  # the cells of the last grading: parsed for it, not kept for this one
    launcher = launcher or shared_launcher()
    limits = limits_for(memory_limit_bytes=memory_limit_bytes, total_timeout=total_timeout)
    if shared is None and check_environment:  # the canary and this grading replay one draw: half the forward passes
        shared = SharedDraw(uses=2)
    canary = _start_canary(launcher, limits, unit_timeout, total_timeout, shared) if check_environment else None
    started = time.monotonic()
    found = extract.read_answers(path)
    if found.error:
        result = SubmissionResult(submission=str(path), error=found.error, isolation=launcher.description)
        result.verdicts = [_verdict(u, ERROR, f"not graded: {found.error}") for u in units.UNITS]
    else:
        result = grade_answers(found, launcher, limits, unit_timeout, started + total_timeout, code=code,
                               shared=shared)
        result.submission = str(path)
    result.code = code
    apply_rule_policy(result, strict_rules)
    apply_shape_policy(result, shape)
    result.execution_time = time.monotonic() - started
    if canary is not None:
        canary.result()  # raises EnvironmentProblem: no verdict leaves before the reference answers scored full
    return result


def _start_canary(launcher: isolation.Launcher, limits: sandbox.Limits, unit_timeout: float,
                  total_timeout: float, shared: SharedDraw | None = None):
    """The canary of this launcher and these limits, if it has not passed yet: in a thread beside the student's
    grading when the sandbox makes boxes without forking this process (two cores: a cold grading does not wait
    for it), else right here. Returns the Future to wait on, or None."""
    if (limits, unit_timeout, total_timeout) in launcher.environment_checked:
        return None
    launcher.settle()  # self-study: know now whether the sandbox works, or boxes will fork this process
    if not launcher.isolated:  # an unisolated box forks this process: never while another thread runs torch
        ensure_environment(launcher, limits, unit_timeout, total_timeout)
        return None
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="canary")
    future = pool.submit(ensure_environment, launcher, limits, unit_timeout, total_timeout, shared)
    pool.shutdown(wait=False)  # the thread ends with the canary; future.result() waits for it
    return future


def limits_for(*, memory_limit_bytes: int = MEMORY_LIMIT, total_timeout: float = TOTAL_TIMEOUT,
               **_ignored) -> sandbox.Limits:
    """A worker's limits for grade_notebook's keyword arguments (the CPU limit backs up the total timeout)."""
    return sandbox.Limits(memory_bytes=memory_limit_bytes, cpu_seconds=int(total_timeout) + 5)


def timeouts(*, unit_timeout: float = UNIT_TIMEOUT, total_timeout: float = TOTAL_TIMEOUT, **_ignored):
    """(unit_timeout, total_timeout) for grade_notebook's keyword arguments."""
    return unit_timeout, total_timeout


def grade_answers(found: extract.Extraction, launcher: isolation.Launcher, limits: sandbox.Limits,
                  unit_timeout: float, deadline: float, code: str = ALLOWLIST_CODE,
                  shared: SharedDraw | None = None) -> SubmissionResult:
    context = _allowlist_context(found) if code == ALLOWLIST_CODE else None
    decided = _decide_before_replay(found)
    refused, preludes = _added_cells_and_allowlist(found, decided, context)
    decided.update(refused)
    to_replay = [u for u in units.UNITS if u.grade_id not in decided]
    if to_replay:
        code = {u.grade_id: static.strip_magics(found.answers[u.grade_id]) for u in to_replay}
        decided.update(_replay_and_judge(to_replay, code, deadline, unit_timeout, limits, launcher,
                                         preludes=preludes, shared=shared))
    return SubmissionResult(submission="", verdicts=[decided[u.grade_id] for u in units.UNITS],
                            isolation=launcher.description)


def ensure_environment(launcher: isolation.Launcher, limits: sandbox.Limits, unit_timeout: float,
                       total_timeout: float, shared: SharedDraw | None = None) -> None:
    """The canary: grade the reference answers under these limits and this isolation, once per launcher and
    limits. If they do not score full, stop: a student must never be blamed for the machine. `shared`: the draw
    the student's grading beside it takes its replays from, so the canary checks those very replays."""
    key = (limits, unit_timeout, total_timeout)
    if key in launcher.environment_checked:
        return
    from backprop_ninja.grade.canary import REFERENCE_CELLS

    result = grade_answers(extract.Extraction(answers=dict(REFERENCE_CELLS)), launcher, limits, unit_timeout,
                           time.monotonic() + total_timeout, shared=shared)
    failed = [v for v in result.verdicts if not v.passed]
    if failed:
        first = failed[0]
        raise EnvironmentProblem(
            f"this machine cannot grade: the reference answers failed {len(failed)} of {len(result.verdicts)} "
            f"units here (first: {first.unit}: {first.status}: {first.message[:200]}). Check the memory and time "
            f"limits (ulimit -v, --total-timeout) and the sandbox ({launcher.description}); no student was graded.")
    launcher.environment_checked.add(key)


def _allowlist_context(found: extract.Extraction) -> allowlist.Context:
    """Module aliases and the student's own attribute names, from every answer cell and every added cell."""
    sources = [static.strip_magics(s) for s in found.answers.values()]
    sources += [static.strip_magics(source) for _, source in found.added]
    return allowlist.Context.of(sources)


def _decide_before_replay(found: extract.Extraction) -> dict[str, Verdict]:
    """Verdicts that need no replay: missing cells and the static scan's findings (autograd)."""
    decided = {}
    for unit in units.UNITS:
        source = found.answers.get(unit.grade_id)
        if unit.grade_id in found.problems:  # e.g. a cell over the size limit: never parsed, never run
            decided[unit.grade_id] = _verdict(unit, ERROR, found.problems[unit.grade_id])
            continue
        if source is None:
            if unit.grade_id in found.stubs:
                message = (f"the answer cell {unit.grade_id} is still the blank stub "
                           f"(raise NotImplementedError()): replace it with your code for {unit.answer}")
            else:
                message = (f"no cell with grade_id {unit.grade_id} was found: keep the answer cells of the "
                           f"released notebook (their metadata names the unit) and write {unit.answer} there")
            decided[unit.grade_id] = _verdict(unit, MISSING, message)
            continue
        finding = static.scan(source, unit)
        if finding is not None:
            status = ERROR if finding.kind == "syntax" else USES_AUTOGRAD
            decided[unit.grade_id] = _verdict(unit, status, finding.message)
        elif unit.gives:  # a one-go exercise: only the inputs it gives, not Exercise 1's chain
            rule = ONE_GO_RULES[f"ex{unit.exercise}"]
            with syntax.PARSING:  # read_problem parses (one_go.py is inlined into the notebook: it has no lock)
                problem = one_go.read_problem(static.strip_magics(source), f"Exercise {unit.exercise}", unit.gives,
                                              set(rule["refused"]))
            if problem:
                decided[unit.grade_id] = _verdict(unit, NOT_ALLOWED, problem)
    return decided


def _added_cells_and_allowlist(found: extract.Extraction, decided: dict[str, Verdict],
                               context: allowlist.Context | None = None
                               ) -> tuple[dict[str, Verdict], dict[str, list[str]]]:
    """(verdicts of the answers refused before any replay, grade_id -> the definitions to run before that answer
    cell). Refused: an answer that reaches autograd, or (under the allowlist policy, `context` given) something
    off the allowlist, through a cell the student added (definitions.py); then an answer that is itself off the
    allowlist. Only then are the added cells' definitions given to the answer cells that will run."""
    added = definitions.from_added_cells(found.added, context) if found.added else []
    verdicts, stand_ins = {}, {}
    for unit in (u for u in units.UNITS if u.grade_id not in decided and added):
        use = definitions.check_use(found.answers[unit.grade_id], unit, found.positions.get(unit.grade_id, -1),
                                    added)
        if use.finding is not None:
            status = {"syntax": ERROR, "not_allowed": NOT_ALLOWED}.get(use.finding.kind, USES_AUTOGRAD)
            verdicts[unit.grade_id] = _verdict(unit, status, use.finding.message)
        elif use.silenced:
            stand_ins[unit.grade_id] = [definitions.stand_in(name) for name in use.silenced]
    for unit in (u for u in units.UNITS if context is not None and u.grade_id not in decided
                 and u.grade_id not in verdicts):
        refusal = allowlist.check(static.strip_magics(found.answers[unit.grade_id]), context)
        if refusal is not None:
            verdicts[unit.grade_id] = _verdict(unit, NOT_ALLOWED, refusal.message)
    if not added:
        return verdicts, {}
    order = [(u.grade_id, found.positions.get(u.grade_id, -1)) for u in units.UNITS
             if u.grade_id not in decided and u.grade_id not in verdicts]
    preludes = definitions.preludes(order, added)
    for grade_id, extra in stand_ins.items():
        preludes[grade_id] = preludes.get(grade_id, []) + extra  # after the definitions, so the stand-in wins
    return verdicts, preludes


# ---- data and replays ----

@functools.lru_cache(maxsize=1)
def training_set(names_file: str) -> tuple[torch.Tensor, torch.Tensor]:
    """model.build_dataset(model.split_words(words)[0]), vectorised (a tenth of the time)."""
    words = Path(names_file).read_text(encoding="utf-8").splitlines()
    train = model.split_words(words)[0]
    lookup = np.full(256, -1, dtype=np.int64)
    for index, char in enumerate(model.VOCAB):
        lookup[ord(char)] = index
    pad = model.VOCAB[0] * model.BLOCK_SIZE
    text = "".join(pad + word + model.VOCAB[0] for word in train)
    try:
        codes = lookup[np.frombuffer(text.encode("ascii"), dtype=np.uint8)]
    except UnicodeEncodeError:
        codes = np.array([-1])
    if (codes < 0).any():
        raise ValueError(f"{names_file}: names may only use the letters a-z; run `backprop-ninja setup-data`")
    lengths = np.array([len(word) for word in train], dtype=np.int64)
    examples = lengths + 1                                # one per letter, plus the end marker
    segment_starts = np.cumsum(lengths + model.BLOCK_SIZE + 1) - (lengths + model.BLOCK_SIZE + 1)
    within = np.arange(examples.sum()) - np.repeat(np.cumsum(examples) - examples, examples)
    starts = np.repeat(segment_starts, examples) + within
    windows = np.lib.stride_tricks.sliding_window_view(codes, model.BLOCK_SIZE + 1)[starts]
    return torch.from_numpy(windows[:, :model.BLOCK_SIZE].copy()), torch.from_numpy(windows[:, -1].copy())


def replay_plans(base: int | None = None) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The replays of one grading: (Exercise 1's, Exercises 2 to 4's).

    The fresh seeds change with every grading, so a reference gradient that a cell saved to disk while one
    notebook was graded answers nothing in the next grading. Exercises 2 to 4 get seeds of their own, so the
    references Exercise 1's cells are given (dlogits, dhprebn on Exercise 1's inputs) cannot be carried over to
    answer Exercises 2 and 3 within a grading either. Only Exercise 1 replays the notebook's own run.
    """
    if base is None:
        base = draw_seed_base()
    ordinary = len(REPLAYS)
    special_1 = [(base + ordinary + i, n, variant) for i, (_, n, variant) in enumerate(SPECIAL_REPLAYS)]
    special_later = [(base + 1000 + ordinary + i, n, variant) for i, (_, n, variant) in enumerate(SPECIAL_REPLAYS)]
    exercise_1 = [REPLAYS[0]] + [(base + i, n) for i, (_, n) in enumerate(REPLAYS) if i] + special_1
    later = [(base + 1000 + i, n) for i, (_, n) in enumerate(REPLAYS)] + special_later
    return exercise_1, later


def draw_seed_base() -> int:
    """The base of a grading's fresh seeds: secret and random, or $BACKPROP_NINJA_REPLAY_SEED."""
    return int(os.environ.get(SEED_ENV) or secrets.randbelow(2**30))


class SharedDraw:
    """One draw of fresh seeds, with its replays and their reference gradients, kept for up to `uses` gradings
    of this process (a batch worker), instead of a draw, ten forward passes and ten backward passes per grading.

    Only under an isolated launcher (grade_notebook ignores it otherwise). Why that keeps the threat model of
    docs/grader.md#replays: the seeds are still secret and random, so no student knows them in advance; what fresh
    seeds per grading defend against is a file that one grading's cell saved and a later grading's cell reads,
    and in the sandbox no such file exists: each submission's boxes have a private tmpfs /tmp and /dev/shm, the
    rest is read-only, there is no network, and the boxes of two submissions never run together in one worker.
    The references are made in this process after the first box of the draw opened; boxes are forked from the
    sandbox host, never from here, so no spawner ever holds them. Unisolated, boxes are forked from this process
    and cells can write to the disk: every grading draws its own seeds there, as before."""

    def __init__(self, uses: int):
        if uses < 1:
            raise ValueError(f"a draw of seeds serves at least one grading, not {uses}")
        self.uses = uses
        self.left = 0
        self.plans: tuple[list, list] = ([], [])
        self.replays: dict[tuple, model.Replay] = {}  # plan entry -> its replay, references filled once
        self.proofs: dict[tuple, dict] = {}  # (plan entry, units graded) -> evidence.build_evidence's (read only)
        self.lock = threading.Lock()  # a cold grading shares its draw with the canary's thread
        self.making: dict[tuple, threading.Lock] = {}

    def next_plans(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        with self.lock:
            if self.left <= 0:
                self.plans, self.replays, self.proofs, self.left = replay_plans(draw_seed_base()), {}, {}, self.uses
                self.making = {}
            self.left -= 1
            return self.plans

    def replays_for(self, plan: list[tuple]) -> list[model.Replay]:
        """The plan's replays, made once. A replay another thread is making now is skipped and waited for last,
        so a grading and its canary make different replays side by side."""
        busy = []
        for spec in plan:
            if self._making(spec).acquire(blocking=False):
                self._make(spec)
            else:
                busy.append(spec)
        for spec in busy:
            self._making(spec).acquire()
            self._make(spec)
        return [self.replays[spec] for spec in plan]

    def _making(self, spec: tuple) -> threading.Lock:
        with self.lock:
            return self.making.setdefault(spec, threading.Lock())

    def _make(self, spec: tuple) -> None:
        """With _making(spec) held: make the replay unless it exists, then let go of the lock."""
        try:
            if spec not in self.replays:
                self.replays[spec] = replay_inputs(*spec)
        finally:
            self._making(spec).release()

    def fill_references(self, replay: model.Replay) -> None:
        with self.lock:
            if not replay.grads:
                add_reference_gradients(replay)

    def evidence(self, spec: tuple, graded: set[str]) -> dict:
        key = (spec, frozenset(graded))
        with self.lock:
            if key not in self.proofs:
                self.proofs[key] = evidence.build_evidence(self.replays[spec], graded)
            return self.proofs[key]


@functools.lru_cache(maxsize=16)
def _replay_values(names_file: str, seed: int, n: int, variant: str = model.PLAIN):
    """model.replay_values on the training set, cached: no gradients, so safe to cache and to fork."""
    X, Y = training_set(names_file)
    return model.replay_values(X, Y, seed, n, variant=variant)


def replay_inputs(seed: int, n: int, variant: str = model.PLAIN) -> model.Replay:
    """A Replay whose `grads` are still empty: fill them with add_reference_gradients after forking.
    Takes a replay plan's entry as it is: (seed, n) or (seed, n, variant)."""
    from backprop_ninja.data import names_path

    values, values64 = _replay_values(str(names_path()), seed, n, variant)
    return model.Replay(seed, n, values, values64, grads={}, variant=variant)


def add_reference_gradients(replay: model.Replay) -> None:
    params = [replay.values[name] for name in model.PARAMETER_NAMES]
    replay.grads = model.reference_gradients(params, replay.values["Xb"], replay.values["Yb"])


# ---- the replay itself ----

@dataclass
class _Failure:
    kind: str      # TIMEOUT, CRASHED, or ERROR (a record the grader will not use)
    message: str


def worker_meta() -> dict:
    """What a worker must know of the table (names, never formulas): see sandboxed/worker.py's Meta."""
    return {"gradient_names": sorted(GRADIENT_NAMES), "ex4_returns": list(units.EX4_RETURNS),
            "parameter_names": list(model.PARAMETER_NAMES),
            "constants": {"vocab_size": len(model.VOCAB), "block_size": model.BLOCK_SIZE, "n_embd": model.N_EMBD}}


GRADIENT_NAMES = frozenset({"d" + u.var for u in units.EXERCISE_1} | set(units.EX4_RETURNS))


def _replay_and_judge(to_replay: list[units.Unit], answers: dict[str, str], deadline: float,
                      unit_timeout: float, limits: sandbox.Limits, launcher: isolation.Launcher, *,
                      preludes: dict[str, list[str]] | None = None,
                      shared: SharedDraw | None = None) -> dict[str, Verdict]:
    torch.set_num_threads(1)  # an OpenMP pool that existed before fork() hangs the child
    if shared is not None:
        launcher.settle()
        shared = shared if launcher.isolated else None  # see SharedDraw: unisolated, every grading draws its own
    groups = [(plan, [u for u in to_replay if u.exercise in exercises])
              for plan, exercises in zip(shared.next_plans() if shared else replay_plans(), ({1}, {2, 3, 4}))]
    groups = [(plan, graded) for plan, graded in groups if graded]
    replays = [shared.replays_for(plan) if shared else [replay_inputs(*spec) for spec in plan] for plan, _ in groups]
    verdicts, skip = {}, set()
    starts = [sum(len(group) for group in replays[:k]) for k in range(len(replays))]
    # One box for both sets of replays, and one worker: Exercises 2 to 4 first, in a worker never sent a reference
    # (see _Runner), which then goes on to Exercise 1's units on Exercise 1's own replays.
    out_of_reach = _spawner_out_of_reach(launcher)
    budget = records.AnswerBudget()  # the answers this submission may keep in memory, all units together
    key = tuple(spec for plan, _ in groups for spec in plan) if shared else None  # the host keeps a draw's replays
    with _open_box(launcher, [r.values for group in replays for r in group], limits, key) as box:
        for r in (r for group in replays for r in group):  # only now: the spawner will never see these
            if shared:  # a shared draw's replays keep theirs
                shared.fill_references(r)
            else:
                add_reference_gradients(r)
        worker = None
        for (plan, graded), group, start in reversed(list(zip(groups, replays, starts))):
            runner = _Runner(box, to_replay, answers, group, list(range(start, start + len(group))), unit_timeout,
                             deadline, skip, preludes, spawner_out_of_reach=out_of_reach, budget=budget,
                             worker=worker)
            graded_ids = {u.grade_id for u in graded}
            outcomes = runner.run_all(graded_ids)
            worker = runner.hand_over()
            proofs = [shared.evidence(spec, graded_ids) if shared else evidence.build_evidence(r, graded_ids)
                      for spec, r in zip(plan, group)]
            verdicts.update({u.grade_id: _judge(u, outcomes[u.grade_id], [p[u.grade_id] for p in proofs], plan)
                             for u in graded})
            for u in graded:  # the rule probe: a note on right answers that are right by luck
                if u.grade_id in runner.probes and verdicts[u.grade_id].status == OK:
                    verdicts[u.grade_id] = _probe_note(verdicts[u.grade_id], outcomes[u.grade_id],
                                                       runner.probes[u.grade_id], proofs[probe.PROBE_REPLAY][u.grade_id])
        if worker is not None:
            worker.kill()
    return verdicts


def _open_box(launcher: isolation.Launcher, values: list, limits: sandbox.Limits, key=None) -> sandbox.Box:
    """launcher.open_box; a box that cannot be opened is the machine's fault (no code of this submission ran yet)."""
    try:
        return launcher.open_box(values, worker_meta(), limits, key)
    except (sandbox.BoxUnavailable, OSError) as error:
        raise MachineFault(f"the sandbox could not open a box for this submission ({error})") from None


def _spawner_out_of_reach(launcher: isolation.Launcher) -> bool:
    """Whether no cell can end a box's spawner: isolated it is PID 1 of the box's namespace, and seccomp lets a
    worker signal only itself. Then a spawner that fails is the machine's fault, never the student's."""
    from backprop_ninja.sandboxed import confine

    return launcher.isolated or confine.seccomp_available()


class _Runner:
    """Drives workers through the units, restarting after a timeout or a crash.

    A fresh worker silently re-runs the earlier answer cells (not those that hung or crashed) so
    helpers exist. Exercises 2 to 4 always start in a worker that has never been sent a reference
    gradient, so no earlier unit's injected gradient can be stashed and handed back as an answer
    (one worker, Exercise 3 graded last: _in_order); that worker re-runs only the earlier cells that
    define something besides gradients (helpers, imports), since those exercises start from the loss,
    not from Exercise 1's results. It is then handed over to grade Exercise 1 on that exercise's own
    replays, whose namespaces it has not touched (a replay's namespace is its own in the worker).
    """

    def __init__(self, box, jobs, answers, replays, indices: list[int], unit_timeout, deadline, skip: set[str],
                 preludes: dict[str, list[str]] | None = None, spawner_out_of_reach: bool = True,
                 budget: records.AnswerBudget | None = None, worker: sandbox.Worker | None = None):
        self.box, self.jobs, self.answers, self.replays = box, jobs, answers, replays
        self.budget = budget or records.AnswerBudget()
        self.spawner_out_of_reach = spawner_out_of_reach  # then a failing box is the machine's (MachineFault)
        self.preludes = preludes or {}  # grade_id -> definitions from added cells, run just before that cell
        self.indices = indices  # where these replays sit among the box's
        self.unit_timeout, self.deadline = unit_timeout, deadline
        self.skip = skip  # cells that hung or crashed: never re-run (shared between the two sets of replays)
        # A worker handed over by the runner of the other replays (hand_over) has run none of these replays' cells
        # and holds none of their references; it may hold the other replays' references.
        self.worker: sandbox.Worker | None = worker
        self.worker_saw_references = worker is not None
        self.sent: set[str] = set()  # reference names this worker holds for these replays
        self.ran: set[int] = set()  # indices in jobs of the cells this worker has run on these replays
        self.broken: str | None = None  # set if no worker can be started any more
        # grade_id -> (the rule probe, the answer on it or None): Exercise 1 units, see probe.py
        self.probes: dict[str, tuple[probe.Probe, np.ndarray | None]] = {}

    def run_all(self, graded: set[str]) -> dict[str, object]:
        """Grade the units in `graded`; the others among jobs only run as history, to define helpers."""
        outcomes = {}
        for index, unit in self._in_order(graded):
            if time.monotonic() >= self.deadline:
                outcomes[unit.grade_id] = _Failure(TIMEOUT, _out_of_total_time())
                continue
            outcomes[unit.grade_id] = self._grade(index, unit)
        return outcomes

    def hand_over(self) -> sandbox.Worker | None:
        """The worker, for the runner of the other replays (the caller kills it in the end)."""
        worker, self.worker = self.worker, None
        return worker

    def _in_order(self, graded: set[str]) -> list[tuple[int, units.Unit]]:
        """(index in jobs, unit) of the units to grade: in the notebook's order, but Exercise 3 after Exercise 4.
        Exercise 3 is the only one after Exercise 1 that is sent a reference (dhpreact); graded last, it leaves
        Exercises 2 and 4 to one worker that has never been sent any, and no second fresh worker is needed."""
        todo = [(index, unit) for index, unit in enumerate(self.jobs) if unit.grade_id in graded]
        return sorted(todo, key=lambda item: (item[1].exercise == 3, item[0]))

    def _grade(self, index: int, unit: units.Unit):
        if self.worker is not None and unit.exercise >= 2 and self.worker_saw_references:
            self._drop_worker()
        if self.worker is not None:
            self._catch_up(index)  # the cells graded out of order (Exercise 3's) still define their helpers first
        if self.worker is None:
            self._fresh_worker(index)
            if self.broken:
                return _Failure(CRASHED, f"not graded: {self.broken}")
            if self.worker is None:
                return _Failure(TIMEOUT, _out_of_total_time())
        upstream = [evidence.upstream_for(unit, r) for r in self.replays]
        # A worker keeps the references it was sent; send only those it lacks (Exercise 1's grow by one a unit).
        new = [[name for name in u if name not in self.sent] for u in upstream]
        arrays = [u[name].detach().contiguous().numpy() for u, names in zip(upstream, new) for name in names]
        header = {**_job(unit), "mode": "graded", "source": self.answers[unit.grade_id], "replays": self.indices,
                  "upstream": [list(u) for u in upstream], "new": new, **self._prelude(unit)}
        made = None
        if probe.probed(unit):  # in the same job, to save a round trip per unit: the worker runs it last
            made, header["probe"], probe_arrays = self._probe_job(index, unit)
            arrays += probe_arrays
        self.sent.update(name for names in new for name in names)
        self.worker_saw_references |= bool(self.sent)
        self.ran.add(index)
        try:
            reply, answer_arrays = self.worker.request(header, arrays, self._deadline(), self.budget.left)
            reply, answer_arrays = records.graded_record(
                reply, answer_arrays, replays=len(self.indices), probe_asked=made is not None,
                per_answer=len(units.EX4_RETURNS) if unit.exercise == 4 else 1)
            self.budget.take(answer_arrays)
        except sandbox.WorkerFailure as failure:
            self._drop_worker()
            self._raise_if_box_died(failure)
            self.skip.add(unit.grade_id)
            return self._failure(failure)
        except records.BadRecord as bad:  # only the cell can have written it: its worker is not used again
            self._drop_worker()
            self.skip.add(unit.grade_id)
            return _Failure(ERROR, bad.message)
        if made is not None and isinstance(reply.get("probe"), dict):
            answered = reply["probe"].get("kind") == "answer" and len(answer_arrays) == len(self.indices) + 1
            self.probes[unit.grade_id] = (made, answer_arrays[-1] if answered else None)
            answer_arrays = answer_arrays[:-1] if answered else answer_arrays
        return reply, answer_arrays

    def _probe_job(self, index: int, unit: units.Unit) -> tuple[probe.Probe, dict, list[np.ndarray]]:
        """The rule probe's part of a graded job (probe.py): one more run of the unit's cell on one replay, with
        random upstreams for its consumers, after earlier cells that start this gradient, on the same upstreams.
        The worker runs it only if the cell answered on every replay, in a throwaway state, and stores nothing of
        it; a probe that fails is no evidence."""
        replay = self.replays[probe.PROBE_REPLAY]
        made = probe.make_probe(unit, replay)
        starters = [u for u in self.jobs[:index] if u.exercise == 1 and u.grade_id not in self.skip
                    and probe.binds(self.answers[u.grade_id], unit.answer)]
        cells = [{**_job(u), "source": self.answers[u.grade_id], "upstream": list(evidence.upstream_for(u, replay)),
                  **self._prelude(u)} for u in starters + [unit]]
        header = {"replay": self.indices[probe.PROBE_REPLAY], "cells": cells, "override": list(made.upstream)}
        return made, header, [t.contiguous().numpy() for t in made.upstream.values()]

    def _fresh_worker(self, index: int) -> None:
        """Start a worker and re-run the earlier cells in it; a cell that fails here is skipped from now on."""
        self._drop_worker()
        while time.monotonic() < self.deadline:
            try:
                self.worker, self.worker_saw_references = self.box.start_worker(), False
                self.sent, self.ran = set(), set()
            except sandbox.BoxUnavailable as error:
                if self.spawner_out_of_reach:
                    raise MachineFault(f"{error}; no cell can reach the spawner, so the machine failed") from None
                self.broken = f"{error}; an earlier cell may have killed it"  # unisolated, without seccomp
                return
            if self._catch_up(index):
                return

    def _catch_up(self, index: int) -> bool:
        """Re-run, as history, the cells before jobs[index] that this worker has not run; False if one failed (it is
        skipped from now on, and the worker dropped)."""
        for earlier_index, earlier in enumerate(self.jobs[:index]):
            if earlier_index in self.ran:
                continue
            self.ran.add(earlier_index)
            history = self._history(earlier, self.jobs[index].exercise)
            if history is None:
                continue
            key, header = history
            try:
                records.history_record(*self.worker.request(header, [], self._deadline(), max_payload=0))
            except (sandbox.WorkerFailure, records.BadRecord):
                self.skip.add(key)
                self._drop_worker()
                return False
        return True

    def _history(self, earlier: units.Unit, exercise: int) -> tuple[str, dict] | None:
        """(what to skip if it fails, the history job) that rebuilds what `earlier` defined before a unit of
        `exercise`: its answer cell with the added cells' definitions before it, or just those definitions when
        the answer is not re-run (it hung or crashed, or it defines only gradients and Exercises 2 to 4 follow)."""
        source = self.answers[earlier.grade_id]
        if earlier.grade_id not in self.skip and (exercise == 1 or defines_helpers(source)):
            return earlier.grade_id, {**_job(earlier), "mode": "history", "source": source, "replays": self.indices,
                                      **self._prelude(earlier)}
        key = "definitions before " + earlier.grade_id
        if earlier.grade_id in self.preludes and key not in self.skip:
            return key, {**_job(earlier), "mode": "history", "source": "", "replays": self.indices,
                         **self._prelude(earlier)}
        return None

    def _prelude(self, unit: units.Unit) -> dict:
        """The header entry with the definitions to run before `unit`'s cell; none in most notebooks."""
        prelude = self.preludes.get(unit.grade_id)
        return {"prelude": prelude} if prelude else {}

    def _raise_if_box_died(self, failure: sandbox.WorkerFailure) -> None:
        """A worker that died because its spawner ended died of the machine, not of its cell."""
        if failure.kind == "crashed" and self.spawner_out_of_reach and not self.box.spawner_alive():
            raise MachineFault(f"the sandbox's spawner ended while a cell ran ({failure.detail})")

    def _deadline(self) -> float:
        return min(time.monotonic() + self.unit_timeout, self.deadline)

    def _drop_worker(self) -> None:
        if self.worker is not None:
            self.worker.kill()
        self.worker = None

    def _failure(self, failure: sandbox.WorkerFailure) -> _Failure:
        if failure.kind == "timeout":
            if time.monotonic() >= self.deadline:
                return _Failure(TIMEOUT, _out_of_total_time())
            return _Failure(TIMEOUT, f"still running after {self.unit_timeout:g} s, so it was stopped: "
                                     f"look for an endless loop (the other units were graded without it)")
        return _Failure(CRASHED, f"the process running this cell died without answering ({failure.detail}): "
                                 f"os._exit, signals and running out of memory end it; the other units were "
                                 f"graded without this cell")


def _job(unit: units.Unit) -> dict:
    return {"unit": unit.grade_id, "answer": unit.answer, "exercise": unit.exercise}


def defines_helpers(source: str) -> bool:
    """Whether a cell binds any name other than a gradient d<var> (a function, an import, a constant)."""
    try:
        nodes = syntax.nodes(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return False
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom,
                             ast.Global)):
            return True
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id not in GRADIENT_NAMES:
            return True
    return False


def _out_of_total_time() -> str:
    return "not graded: the submission ran out of its total time limit (an earlier cell was too slow)"


# ---- judging ----

def _judge(unit: units.Unit, outcome, proofs: list, plan: list[tuple[int, int]]) -> Verdict:
    if isinstance(outcome, _Failure):
        return _verdict(unit, outcome.kind, outcome.message)
    reply, arrays = outcome
    per_replay = reply.get("outcomes", [])
    if len(per_replay) != len(plan):
        return _verdict(unit, CRASHED, "the grading process sent back an incomplete record")
    per_replay, proofs, plan, skipped = _without_float64_only_failures(per_replay, proofs, list(plan))
    for kind in ("autograd", "raised", "invalid"):
        for index, item in enumerate(per_replay):
            if item.get("kind") == kind:
                return _problem_verdict(unit, item, index, per_replay, plan)
    checks = _checks(unit, arrays, proofs)
    if checks is None:
        return _verdict(unit, CRASHED, "the grading process sent back an incomplete record")
    ok, message = compare.summarize(checks, list(plan), unit)
    if skipped:
        message += f"; {skipped}"
    diffs = [c.max_diff for c in checks if c.max_diff is not None]
    first_failing = next((c for c in checks if not c.ok), None)
    mismatch = first_failing.mismatch if first_failing is not None else None
    shape_only = not ok and all(c.ok or c.size1_only for c in checks)
    return _verdict(unit, OK if ok else WRONG, message, exact=checks[0].exact, max_diff=max(diffs, default=None),
                    mismatch=downsample(mismatch) if mismatch is not None else None, shape_only=shape_only)


def _without_float64_only_failures(per_replay: list[dict], proofs: list, plan: list):
    """Leave out the float64 replay when the cell raised (or gave no tensor) there alone.

    Code written for the notebook's float32 may mix in a float32 tensor (`F.one_hot(Yb, 27).float() @ x`), and
    in float64 that raises a dtype error that the notebook never shows: the answer is judged on the other
    replays, with a word on why the float64 one is missing. Autograd is never excused. Returns the outcomes,
    proofs and plan kept, and that word ("" when nothing was left out)."""
    def variant(index: int) -> str:
        return plan[index][2] if len(plan[index]) > 2 else model.PLAIN

    failed = [i for i, item in enumerate(per_replay) if item.get("kind") != "answer"]
    if not failed or any(variant(i) not in model.IN_FLOAT64 or per_replay[i].get("kind") == "autograd"
                         for i in failed):
        return per_replay, proofs, plan, ""
    kept = [i for i in range(len(plan)) if i not in failed]
    item = per_replay[failed[0]]
    what = (f"raised {_cut(item.get('type'), 80)}" if item.get("kind") == "raised" else "gave no tensor")
    word = (f"not checked in float64: there your code {what}; does it force float32 (.float(), "
            f"dtype=torch.float32) next to float64 tensors?")
    return [per_replay[i] for i in kept], [proofs[i] for i in kept], [plan[i] for i in kept], word


def _checks(unit: units.Unit, arrays: list[np.ndarray], proofs: list) -> list[compare.Check] | None:
    per_replay = len(units.EX4_RETURNS) if unit.exercise == 4 else 1
    if len(arrays) != per_replay * len(proofs):
        return None
    checks = []
    for index, proof in enumerate(proofs):
        mine = arrays[index * per_replay:(index + 1) * per_replay]
        if unit.exercise == 4:
            checks.append(compare.merge_checks({
                name: compare.check_answer(answer, proof[name], unit, name)
                for name, answer in zip(units.EX4_RETURNS, mine)}))
        else:
            checks.append(compare.check_answer(mine[0], proof, unit))
    return checks


def _problem_verdict(unit: units.Unit, item: dict, index: int, per_replay: list[dict],
                     plan: list[tuple[int, int]]) -> Verdict:
    kind = item["kind"]
    if kind == "autograd":
        return _verdict(unit, USES_AUTOGRAD, f"your code called {_cut(item.get('call'), 80)} while grading: "
                                             f"autograd is off limits, derive the gradient by hand")
    if kind == "invalid":
        return _verdict(unit, ERROR, _cut(item.get("message"), 2 * MAX_STUDENT_TEXT))
    # A worker's record is untrusted (student code can write to its socket): cut what it says.
    raised = (f"{_cut(item.get('where', 'your cell'), 40)} raised {_cut(item.get('type'), 80)}: "
              f"{_cut(item.get('message'), MAX_STUDENT_TEXT)}")
    if item.get("type") == "NotImplementedError":
        raised += " (remove the `raise NotImplementedError()` line of the stub)"
    seed, n = plan[index][:2]
    notebook_fine = per_replay[0].get("kind") == "answer"
    if index == 0 or not notebook_fine:
        return _verdict(unit, ERROR, raised)
    if len(plan[index]) > 2 and all(item.get("kind") == "answer" for item in per_replay[:index]):
        return _verdict(unit, ERROR, f"works on the ordinary replays, but on {compare.SPECIAL_WORDS[plan[index][2]]} "
                                     f"{raised}")
    if n != plan[0][1]:
        return _verdict(unit, ERROR, f"works on the notebook's batch of {plan[0][1]} rows, but on a batch of "
                                     f"{n} rows {raised}; is the batch size hard-coded? use n")
    return _verdict(unit, ERROR, f"works on the notebook's own run, but on a fresh one {raised}")


def _probe_note(verdict: Verdict, outcome, probed: tuple[probe.Probe, np.ndarray | None],
                true_proof: evidence.Evidence) -> Verdict:
    """A right answer, with a note if the rule probe shows it is right by luck (points are the policy's, later)."""
    made, on_probe = probed
    _, arrays = outcome
    note = probe.luck(made, on_probe, np.asarray(arrays[probe.PROBE_REPLAY], dtype=np.float64), true_proof.scale)
    if note is None:
        return verdict
    verdict.note = note
    verdict.message = f"{verdict.message}, but by luck: {note}"
    return verdict


def apply_rule_policy(result: SubmissionResult, strict: bool) -> SubmissionResult:
    """Lenient (the default): right by luck keeps its points and its note. Strict: it earns nothing, under a
    status of its own, so every export and nbgrader see a unit that did not pass."""
    result.rules = STRICT_RULES if strict else LENIENT_RULES
    if strict:
        for verdict in result.verdicts:
            if verdict.status == OK and verdict.note:
                verdict.status, verdict.points = RIGHT_BY_LUCK, 0
                verdict.message = (f"right by luck, which earns no points under the strict rule policy: "
                                   f"{verdict.note}")
    return result


def apply_shape_policy(result: SubmissionResult, shape: str) -> SubmissionResult:
    """Strict (the default): a gradient must have its variable's shape, since a (64,) where (1, 64) belongs
    broadcasts differently wherever it is used next. Lenient: an intermediate's gradient that is right in value and
    differs only by size-1 dimensions earns its points, with the shape message kept. Never a parameter's (Exercise 1
    or 4): parameters are updated in place, so their gradients' shapes must match exactly."""
    result.shape = shape
    if shape != LENIENT_SHAPE:
        return result
    for verdict in result.verdicts:
        unit = units.BY_ID.get(verdict.unit)
        if verdict.status == WRONG and verdict.shape_only and unit is not None and unit.exercise != 4 \
                and unit.var not in model.PARAMETER_NAMES:
            verdict.status, verdict.points = OK, verdict.max_points
            verdict.message = f"right in value; accepted under the lenient shape policy, though: {verdict.message}"
    return result


def _cut(text, limit: int) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _verdict(unit: units.Unit, status: str, message: str, **extra) -> Verdict:
    points = unit.points if status == OK else 0
    return Verdict(unit.grade_id, status, points, unit.points, message, **extra)


def downsample(mismatch: np.ndarray, side: int = MISMATCH_MAX_SIDE) -> list[list[bool]]:
    """The mismatch as a 2-D bool matrix of at most side x side: a cell is True if any position it covers is."""
    m = np.asarray(mismatch, dtype=bool)
    if m.ndim == 0:
        m = m.reshape(1, 1)
    elif m.ndim == 1:
        m = m.reshape(1, -1)
    elif m.ndim > 2:
        m = m.reshape(m.shape[0], -1)
    rows, cols = m.shape
    row_step, col_step = -(-rows // side) or 1, -(-cols // side) or 1
    padded = np.zeros((-(-rows // row_step) * row_step, -(-cols // col_step) * col_step), dtype=bool)
    padded[:rows, :cols] = m
    pooled = padded.reshape(padded.shape[0] // row_step, row_step, padded.shape[1] // col_step, col_step)
    return pooled.any(axis=(1, 3)).tolist()
