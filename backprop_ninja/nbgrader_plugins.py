"""nbgrader preprocessors of the Backprop Ninja course (wired up in nbgrader_config.py; see docs/nbgrader.md).

The points come from the grader (backprop_ninja.grade.engine), not from the student's kernel. The autograde chain:

    EngineVerdicts        before the kernel runs: grade the notebook exactly as nbgrader is about to run it
    SandboxedExecute      nbgrader's Execute, with the kernel in a sandbox (grade/kernel_sandbox.py) unless isolation
                          is off, and going on when the kernel dies or hangs for good
    ScoreOnErrorsOnly     a stray stderr line or execute_result in a grade cell decides nothing
    ApplyEngineVerdicts   every test cell's outputs become the grader's verdict; nbgrader scores those

All of them run in the nbgrader process and never run student code themselves: the grader runs the answer cells in
its own sandboxed workers, and the kernel is sandboxed too. ShortTracebacks is for the feedback.
"""
from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from nbgrader.utils import is_grade
from traitlets import Bool, Enum

from backprop_ninja.grade import isolation
from backprop_ninja.grade.isolation import OFF, REQUIRED
from backprop_ninja.grade.verdict import SHAPE_POLICIES, STRICT_SHAPE

if TYPE_CHECKING:  # the grader is imported lazily below: it imports torch, which nbgrader's other commands never need
    from backprop_ninja.grade.verdict import SubmissionResult

TEST_CELL_PREFIX = "test_"  # the test cell of unit <grade_id> is test_<grade_id> (source/backprop_ninja.py)
NO_ISOLATION_VAR = isolation.NO_ISOLATION_ENV
STATE_KEY = "backprop_ninja_verdicts"  # where EngineVerdicts leaves its result in nbconvert's resources
NOT_GRADED = "NotGraded"  # ename of a unit the grader could not grade (it scores 0 all the same)
GRADING_FIX = (f"set c.EngineVerdicts.isolation = 'off' in nbgrader_config.py or {NO_ISOLATION_VAR}=1 in "
               f"nbgrader's environment to grade without isolation (student code then runs as nbgrader's user, "
               f"and every test cell says so)")


class ScoreOnErrorsOnly(NbGraderPreprocessor):
    """In grade cells, drop stderr streams and execute_results, so points depend only on raised errors."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code" and is_grade(cell):
            cell.outputs = [
                out for out in cell.outputs
                if out.output_type != "execute_result"
                and not (out.output_type == "stream" and out.get("name") == "stderr")
            ]
        return cell, resources


class ShortTracebacks(NbGraderPreprocessor):
    """Replace every error traceback by one line, `Name: message`.

    Tracebacks quote the source of the failing line, which in a test cell can be hidden-test code; feedback must not
    show it. The error name and message stay, so the student still learns what failed.
    """

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            for out in cell.outputs:
                if out.output_type == "error":
                    out.traceback = [f"{out.ename}: {out.evalue}"]
        return cell, resources


# ---- points from the grader ----

@dataclass
class GradedSubmission:
    """What EngineVerdicts hands on to SandboxedExecute and ApplyEngineVerdicts (in nbconvert's resources)."""
    result: SubmissionResult
    isolated: bool            # whether student code (grader's workers and the kernel) runs sandboxed
    unisolated_because: str   # which switch turned isolation off ("" when isolated)


def graded_submission(resources, step: str) -> GradedSubmission:
    state = (resources or {}).get(STATE_KEY)
    if not isinstance(state, GradedSubmission):
        raise RuntimeError(f"{step} found no verdicts from the grader: nbgrader_config.py must list EngineVerdicts "
                           f"before SandboxedExecute and ApplyEngineVerdicts in c.Autograde.autograde_preprocessors")
    return state


_launchers: dict[str, isolation.Launcher] = {}


def engine_launcher(mode: str, unisolated_because: str) -> isolation.Launcher:
    """One launcher per nbgrader process and mode, started on first use and closed at exit."""
    if mode not in _launchers:
        launcher = isolation.start(REQUIRED) if mode == REQUIRED else \
            isolation.UnisolatedLauncher(unisolated_because)
        atexit.register(launcher.close)
        _launchers[mode] = launcher
    return _launchers[mode]


class EngineVerdicts(NbGraderPreprocessor):
    """Before Execute: grade the notebook as submitted, with the grader, before the student's kernel exists.

    The notebook in memory (sanitised: nbgrader has restored its locked and test cells) is written to a private
    temporary file that this process made, and graded there. So nothing the kernel does later (rewrite files,
    change the environment, fake the hook, die) can change what is graded or its verdicts.
    """

    isolation = Enum([REQUIRED, OFF], default_value=REQUIRED, help=(
        "'required': student code runs sandboxed (the grader's workers and the nbgrader kernel), and autograde "
        "fails, naming the fix, where bubblewrap cannot set that up. 'off': no sandbox; the kernel runs as "
        f"nbgrader's user and every test cell says 'graded without isolation'. {NO_ISOLATION_VAR}=1 also turns "
        "it off.")).tag(config=True)

    strict_rules = Bool(False, help=(
        "False (the default): an Exercise 1 answer that is right by luck (it skips its local rule and only matches "
        "because a gradient is exactly 0, as the grader's rule probe shows) keeps its points, and its test cell says "
        "why the value matched. True: it earns no points.")).tag(config=True)

    shape = Enum(list(SHAPE_POLICIES), default_value=STRICT_SHAPE, help=(
        "'strict' (the default): a gradient must have its variable's shape. 'lenient': an intermediate's gradient "
        "that is right in value and differs only by size-1 dimensions earns its points, with the shape message; "
        "parameters must always match.")).tag(config=True)

    def isolation_choice(self) -> tuple[str, str]:
        """(mode, why it is off)."""
        if os.environ.get(NO_ISOLATION_VAR, "") not in ("", "0"):
            return OFF, f"{NO_ISOLATION_VAR}={os.environ[NO_ISOLATION_VAR]}"
        if self.isolation == OFF:
            return OFF, "EngineVerdicts.isolation = 'off'"
        return REQUIRED, ""

    def preprocess(self, nb, resources):
        from backprop_ninja.grade import engine

        mode, unisolated_because = self.isolation_choice()
        try:  # isolation can fail to start here, or at the first box the grader opens
            launcher = engine_launcher(mode, unisolated_because)
            with tempfile.TemporaryDirectory(prefix="backprop-ninja-submission-") as folder:
                path = Path(folder) / "submission.ipynb"
                path.write_text(nbformat.writes(nb))
                result = engine.grade_notebook(path, launcher=launcher, strict_rules=self.strict_rules,
                                               shape=self.shape)
        except isolation.IsolationUnavailable as error:
            raise isolation.IsolationUnavailable(f"{error} In nbgrader: {GRADING_FIX}.") from None
        resources[STATE_KEY] = GradedSubmission(result, launcher.isolated, unisolated_because)
        self.log.info("graded by the grader before execution: %g/%g points (%s; %s rules)", result.score,
                      result.max_score, result.isolation, result.rules)
        return nb, resources


@contextlib.contextmanager
def _environment_variable(name: str, value: str):
    """Set one variable for the kernels started inside the block (they copy os.environ), then restore it."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


class SandboxedExecute(Execute):
    """nbgrader's Execute, with two changes.

    - The kernel runs sandboxed (grade/kernel_sandbox.py) unless EngineVerdicts turned isolation off; either way
      it knows that its hidden-test hook is display only (backprop_ninja/hidden.py).
    - A kernel that dies (os._exit, a signal, out of memory) or stays busy after the timeout's interrupt no longer
      fails the whole submission: the cell it was running gets that error, the cells after it stay unrun, and the
      units keep the grader's verdicts. Stock nbgrader would drop the student's autograded notebook and score
      nothing.
    """

    def preprocess(self, nb, resources=None, km=None):
        from jupyter_client import AsyncKernelManager
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        from backprop_ninja.grade.kernel_sandbox import SandboxedKernelManager
        from backprop_ninja.hidden import OUTSIDE_VERDICTS_VAR

        state = graded_submission(resources, "SandboxedExecute")
        self.kernel_manager_class = SandboxedKernelManager if state.isolated else AsyncKernelManager
        self.running_cell: int | None = None
        try:
            with _environment_variable(OUTSIDE_VERDICTS_VAR, "1"):
                return super().preprocess(nb, resources, km)
        except (DeadKernelError, CellTimeoutError) as stopped:
            if self.running_cell is None:  # the kernel never ran a cell: a machine problem, not the student's
                raise
            self.note_stopped_kernel(stopped)
            return self.nb, self.resources

    def preprocess_cell(self, cell, resources, index):
        self.running_cell = index
        return super().preprocess_cell(cell, resources, index)

    def note_stopped_kernel(self, stopped: Exception) -> None:
        how = "died" if type(stopped).__name__ == "DeadKernelError" else "kept running after its time limit"
        message = (f"the kernel {how} in this cell, so the cells below it were not run; your points come from the "
                   f"grader, which runs every answer cell on its own")
        self.log.warning("cell %d: %s", self.running_cell, message)
        cell = self.nb.cells[self.running_cell]
        name = type(stopped).__name__
        cell.outputs.append(new_output("error", ename=name, evalue=message, traceback=[f"{name}: {message}"]))


class ApplyEngineVerdicts(NbGraderPreprocessor):
    """After Execute: each test cell's outputs become its unit's verdict from EngineVerdicts, whatever the kernel
    printed or raised there. One stdout line says the verdict; a unit that did not pass also gets an error output,
    which is what nbgrader's SaveAutoGrades scores as 0."""

    def preprocess(self, nb, resources):
        state = graded_submission(resources, "ApplyEngineVerdicts")
        verdicts = state.result.by_unit()
        for cell in nb.cells:
            if cell.cell_type != "code" or not is_grade(cell):
                continue
            grade_id = cell.metadata["nbgrader"].get("grade_id", "")
            unit = grade_id[len(TEST_CELL_PREFIX):] if grade_id.startswith(TEST_CELL_PREFIX) else None
            if unit not in verdicts:
                raise RuntimeError(f"the grade cell {grade_id!r} has no verdict from the grader: name each test cell "
                                   f"{TEST_CELL_PREFIX}<grade_id> after a unit of backprop_ninja/units.py in "
                                   f"source/backprop_ninja.py")
            cell.outputs = verdict_outputs(verdicts[unit], state)
        return nb, resources


def verdict_outputs(verdict, state: GradedSubmission) -> list:
    line = f"{verdict.unit}: {verdict.status} ({verdict.points:g}/{verdict.max_points:g}) {verdict.message}"
    if not state.isolated:
        line += f" [graded without isolation: {state.unisolated_because}]"
    outputs = [new_output("stream", name="stdout", text=line + "\n")]
    if not verdict.passed:
        not_graded = bool(state.result.error) or verdict.message.startswith("not graded")
        ename = NOT_GRADED if not_graded else "AssertionError"
        outputs.append(new_output("error", ename=ename, evalue=verdict.message,
                                  traceback=[f"{ename}: {verdict.message}"]))
    return outputs
