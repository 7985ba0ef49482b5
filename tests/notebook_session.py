"""One real Jupyter kernel that holds the release's setup and runs a student's answer cells and the release's own
check cells, as Jupyter (and nbgrader's Validate, which sends no cell ids either) runs them.

Starting a kernel and running the setup cells takes seconds, so one kernel serves many submissions. It first runs
the reference solution (the baseline) and remembers its state; a submission then starts from the baseline's state
at its first cell that differs (what a fresh kernel would hold after running the same cells before it), runs its
cells from there, and the kernel goes back to the baseline before the next one. A check cell is run only where its
verdict can differ from the baseline's: its unit's cell differs, or (Exercise 1) the gradient it checks does.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import nbformat
from nbclient import NotebookClient

from backprop_ninja import units

SETUP_UNTIL = "forward"          # the release's cells up to this grade_id are the setup
ALSO_SETUP = ("ex4_forward",)    # Exercise 4's forward pass and initialisation: definitions its check calls
ONE_GO = ("ex2_logits", "ex3_hprebn", "ex4_backward")  # checked on their own cell (and helpers), not upstream values
MARK = "@@agreement "
ANSWER_IDS = {u.grade_id for u in units.UNITS}

# Test scaffolding defined in the kernel (every name starts with _agreement): it snapshots the baseline, goes back
# to it, and runs one check cell, turning its outcome into one line of JSON. CheckFailed is the notebook's verdict.
SCAFFOLD = '''
import contextlib as _agreement_contextlib, io as _agreement_io, json as _agreement_json


def _agreement_save():
    global _agreement_saved
    global _agreement_grads
    _agreement_saved = {k: _agreement_copy(k, v) for k, v in globals().items() if not k.startswith("_")}
    # autograd's gradients, which a cell that calls .backward() adds to
    _agreement_grads = {k: v.grad.clone() for k, v in _agreement_saved.items()
                        if isinstance(v, torch.Tensor) and v.grad is not None}


def _agreement_copy(name, value):
    """A gradient is copied (a cell may change it in place); the forward pass's tensors stay the very objects that
    hold autograd's .grad, which check() compares with."""
    return value.detach().clone() if name.startswith("d") and isinstance(value, torch.Tensor) else value


def _agreement_reset(cells_kept, undefined):
    """The baseline's state after its first `cells_kept` noted cells, without the names its later cells set."""
    for k in [k for k in globals() if not k.startswith("_") and k not in _agreement_saved]:
        del globals()[k]
    for k, v in _agreement_saved.items():
        if k not in undefined:
            globals()[k] = _agreement_copy(k, v)
        elif k in globals():
            del globals()[k]
    for k, grad in _agreement_grads.items():
        globals()[k].grad = grad.clone()
    del _CELLS[cells_kept:]


def _agreement_wanted(name, cell_changed):
    if cell_changed or name is None:
        return bool(cell_changed)
    now, then = globals().get("d" + name), _agreement_saved.get("d" + name)
    if not (isinstance(now, torch.Tensor) and isinstance(then, torch.Tensor)):
        return True
    return now.shape != then.shape or now.dtype != then.dtype or not torch.equal(now, then)


def _agreement_run(unit, source):
    printed = _agreement_io.StringIO()
    try:
        with _agreement_contextlib.redirect_stdout(printed):
            exec(compile(source, unit, "exec"), globals())
        passes, message = True, None
    except CheckFailed as failed:
        passes, message = False, str(failed)
    except Exception as crash:  # not a verdict: the check itself broke
        passes, message = False, f"the check itself raised {type(crash).__name__}: {crash}"
    print(MARK + _agreement_json.dumps(dict(unit=unit, passes=passes, message=message, printed=printed.getvalue())))
'''.replace("MARK", repr(MARK))


@dataclass(frozen=True)
class Step:
    """One code cell a student runs after the setup: an answer cell, a check cell, or a cell the student added."""
    kind: str        # "answer", "test" or "added"
    unit: str | None  # the unit's grade_id (answer and test cells)
    source: str


@dataclass(frozen=True)
class NotebookVerdict:
    unit: str
    passes: bool
    message: str | None
    printed: str     # what check() printed (a right-by-luck note is printed, not raised)

    @property
    def lucky(self) -> bool:
        return "only by luck" in self.printed


def _grade_id(cell) -> str:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")


def plan(notebook: nbformat.NotebookNode) -> list[Step]:
    """The code cells after the setup, as Run All would run them: answer cells, check cells and added cells. Other
    locked cells (pictures, the training run, `progress()`) judge nothing and are left out."""
    steps, after_setup = [], False
    for cell in notebook.cells:
        grade_id = _grade_id(cell)
        if grade_id == SETUP_UNTIL:
            after_setup = True
            continue
        if not after_setup or cell.cell_type != "code":
            continue  # Jupyter runs code cells only
        if grade_id in ANSWER_IDS:
            steps.append(Step("answer", grade_id, cell.source))
        elif grade_id.startswith("test_") and grade_id[5:] in ANSWER_IDS:
            steps.append(Step("test", grade_id[5:], cell.source))
        elif not cell.get("metadata", {}).get("nbgrader"):
            steps.append(Step("added", None, cell.source))
    return steps


class KernelSession:
    """A kernel with the release's setup and the baseline run; `run` judges one submission's cells."""

    def __init__(self, release: nbformat.NotebookNode, workdir: str, baseline: list[Step]):
        self._log = nbformat.v4.new_notebook()
        self._client = NotebookClient(self._log, kernel_name="python3", allow_errors=True, timeout=300,
                                      resources={"metadata": {"path": workdir}})
        self._release = release
        self.baseline_steps = baseline
        self.baseline: dict[str, NotebookVerdict] = {}
        self._cells_before: list[int] = []   # len(_CELLS) before each baseline step
        self._cells_after = 0                # and after the last

    def __enter__(self) -> KernelSession:
        self._context = self._client.setup_kernel()
        self._context.__enter__()
        setup = True
        for cell in self._release.cells:
            if cell.cell_type == "code" and (setup or _grade_id(cell) in ALSO_SETUP):
                errors = [o for o in self._execute(cell.source) if o.output_type == "error"]
                if errors:
                    raise RuntimeError(f"the release's setup cell {_grade_id(cell)!r} raised in the kernel: "
                                       f"{errors[0].ename}: {errors[0].evalue}")
            setup = setup and _grade_id(cell) != SETUP_UNTIL
        self._execute(SCAFFOLD)
        for step in self.baseline_steps:
            self._cells_before.append(self._noted())
            self.baseline.update(self._step(step, wanted=True))
        self._cells_after = self._noted()
        self._execute("_agreement_save()")
        return self

    def __exit__(self, *exc):
        return self._context.__exit__(*exc)

    def _execute(self, source: str) -> list:
        cell = nbformat.v4.new_code_cell(source)
        self._log.cells = [cell]  # keep no history of outputs: one kernel runs thousands of cells
        self._client.execute_cell(cell, 0)
        return cell.outputs

    def _noted(self) -> int:
        """How many cells the notebook's session record (_CELLS) holds."""
        outputs = self._execute("print(len(_CELLS))")
        return int("".join(o.get("text", "") for o in outputs if o.output_type == "stream"))

    def _step(self, step: Step, wanted: bool | None) -> dict[str, NotebookVerdict]:
        """Run one step; a check cell runs if `wanted` (None: if the gradient it checks differs from the baseline's)."""
        if step.kind != "test":
            self._execute(step.source)
            return {}
        var = units.BY_ID[step.unit].var if step.unit not in ONE_GO else None
        condition = repr(bool(wanted)) if wanted is not None else f"_agreement_wanted({var!r}, False)"
        outputs = self._execute(f"if {condition}:\n    _agreement_run({step.unit!r}, {step.source!r})")
        found = {}
        for output in outputs:
            for line in output.get("text", "").splitlines() if output.output_type == "stream" else []:
                if line.startswith(MARK):
                    record = json.loads(line[len(MARK):])
                    found[record["unit"]] = NotebookVerdict(record["unit"], record["passes"], record["message"],
                                                            record["printed"])
        return found

    def _names_set(self, steps: list[Step]) -> set[str]:
        return {"d" + units.BY_ID[s.unit].var for s in steps if s.kind == "answer"} | (
            {"manual_backward"} if any(s.unit == "ex4_backward" for s in steps) else set())

    def run(self, steps: list[Step]) -> dict[str, NotebookVerdict]:
        """The notebook's verdicts on a submission's plan (`plan`), for the units whose verdict can differ from the
        baseline's. The kernel starts from the baseline's state at the plan's first cell that differs, as if the
        cells before it had just been run in a fresh kernel."""
        first = next((i for i, (a, b) in enumerate(zip(steps, self.baseline_steps)) if a != b),
                     min(len(steps), len(self.baseline_steps)))
        if first == len(steps) == len(self.baseline_steps):
            return {}  # the same cells as the baseline: the same verdicts
        # what the cells from `first` on set, and no cell before it (dlogits is set by Exercise 1 and 2 alike)
        undefined = self._names_set(self.baseline_steps[first:]) - self._names_set(self.baseline_steps[:first])
        self._execute(f"_agreement_reset({self._cells_before[first]}, {sorted(undefined)!r})")
        return self._run_steps(steps[first:])

    def run_one(self, unit: str, source: str) -> NotebookVerdict:
        """The notebook's verdict when a student changes one answer cell of the baseline and re-runs it and its check
        (a mutant): the other gradients stay as the baseline made them."""
        answer = next(s for s in self.baseline_steps if s.kind == "answer" and s.unit == unit)
        test = next(s for s in self.baseline_steps if s.kind == "test" and s.unit == unit)
        self._execute(f"_agreement_reset({self._cells_after}, {sorted(self._names_set([answer]))!r})")
        return self._run_steps([Step("answer", unit, source), test], every_check=True)[unit]

    def _run_steps(self, steps: list[Step], every_check: bool = False) -> dict[str, NotebookVerdict]:
        baseline_answers = {s.unit: s for s in self.baseline_steps if s.kind == "answer"}
        changed = {s.unit for s in steps if s.kind == "answer" and baseline_answers.get(s.unit) != s}
        added = [s for s in steps if s.kind == "added" and s not in self.baseline_steps]  # helpers they may call
        one_go_changed = bool(changed & set(ONE_GO) or added)
        verdicts = {}
        try:
            for step in steps:
                wanted = None  # Exercise 1: check where the gradient differs from the baseline's
                if every_check or step.unit in changed:
                    wanted = True
                elif step.unit in ONE_GO:
                    wanted = one_go_changed
                verdicts.update(self._step(step, wanted))
        finally:
            self._execute(f"_agreement_reset({self._cells_after}, [])")  # back to the baseline
        return verdicts
