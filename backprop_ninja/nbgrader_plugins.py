"""nbgrader preprocessors of the Backprop Ninja course (wired up in nbgrader_config.py; see docs/nbgrader.md).

The points come from the grader (backprop_ninja.grade.engine), not from the student's kernel. The autograde chain:

    EngineVerdicts        before the kernel runs: grade the notebook exactly as nbgrader is about to run it
    SandboxedExecute      nbgrader's Execute, with the kernel in a sandbox (grade/kernel_sandbox.py) unless isolation
                          is off, a time limit for the whole notebook, and going on when the kernel dies or hangs
    ScoreOnErrorsOnly     a stray stderr line or execute_result in a grade cell decides nothing
    ApplyEngineVerdicts   every test cell's outputs become the grader's verdict; nbgrader scores those

All of them run in the nbgrader process and never run student code themselves: the grader runs the answer cells in
its own sandboxed workers, and the kernel is sandboxed too. RestoreReleaseMetadata runs first when nbgrader
sanitises a submission; ShortTracebacks and StudentOutputsAsText are for the feedback.
"""
from __future__ import annotations

import atexit
import base64
import binascii
import contextlib
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute, NbGraderPreprocessor
from nbgrader.api import Gradebook
from nbgrader.utils import is_grade, is_locked
from traitlets import Bool, Enum, Integer

from backprop_ninja.grade import isolation
from backprop_ninja.grade.isolation import OFF, REQUIRED
from backprop_ninja.grade.verdict import ALLOWLIST_CODE, CODE_POLICIES, SHAPE_POLICIES, STRICT_SHAPE

if TYPE_CHECKING:  # the grader is imported lazily below: it imports torch, which nbgrader's other commands never need
    from backprop_ninja.grade.verdict import SubmissionResult

TEST_CELL_PREFIX = "test_"  # the test cell of unit <grade_id> is test_<grade_id> (source/backprop_ninja.py)
NO_ISOLATION_VAR = isolation.NO_ISOLATION_ENV
STATE_KEY = "backprop_ninja_verdicts"  # where EngineVerdicts leaves its result in nbconvert's resources
NOT_GRADED = "NotGraded"  # ename of a unit the grader could not grade (it scores 0 all the same)
NOTEBOOK_TIME_UP = "NotebookTimeLimit"  # ename on the cell in which the whole notebook's time limit ran out
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


# ---- what the student sent is data: metadata from the release, outputs as text ----

class RestoreReleaseMetadata(NbGraderPreprocessor):
    """First in Autograde.sanitize_preprocessors: every cell's nbgrader metadata is rebuilt from the gradebook
    (what generate_assignment recorded of the release), so nbgrader never reads the student's own.

    Of the student's metadata only the grade_id is read, as the claim "this cell is my copy of that release cell".
    A claim of an id the release does not have is dropped, and of several cells claiming one id only one keeps it:
    for an answer cell, the cell the grader grades (extract.answers_from_cells: the last non-blank one); for any
    other, the last one, as nbgrader's DeduplicateIds does. The cell that keeps it gets the release's flags
    (grade, solution, locked, task) and points; the others lose their nbgrader metadata and are ordinary added
    cells. So a duplicated or relabelled grade_id, changed points or flags, or nbgrader metadata without a grade_id
    no longer stop autograde with a KeyError or leave cells for manual grading: nbgrader's own steps after this one
    (OverwriteCells restoring locked sources and missing test cells) see a well-formed notebook, and the tamperer
    gets what the grader gives the cells as submitted.
    """

    def preprocess(self, nb, resources):
        release = self.release_cells(resources["nbgrader"])
        claims = {index: grade_id for index, grade_id in enumerate(map(claimed_grade_id, nb.cells))
                  if grade_id is not None}
        kept = kept_claims(nb.cells, claims)
        for index, cell in enumerate(nb.cells):
            grade_id = claims.get(index)
            if grade_id is not None and kept.get(grade_id) == index and grade_id in release:
                cell.metadata["nbgrader"] = dict(release[grade_id])
            elif "nbgrader" in cell.get("metadata", {}):
                if grade_id is not None:
                    self.log.warning("cell %d: its grade_id %r is %s; it is graded as a cell the student added",
                                     index, grade_id, "not in the release" if grade_id not in release else
                                     "claimed by another cell too")
                del cell.metadata["nbgrader"]
        return nb, resources

    @staticmethod
    def release_cells(where: dict) -> dict[str, dict]:
        """grade_id -> the nbgrader metadata of that cell in the release, read from the gradebook."""
        with Gradebook(where["db_url"]) as gradebook:
            notebook = gradebook.find_notebook(where["notebook"], where["assignment"])
            points = {cell.name: float(cell.max_score) for cell in notebook.grade_cells}
            points.update({cell.name: float(cell.max_score) for cell in notebook.task_cells})
            solutions = {cell.name for cell in notebook.solution_cells}
            tasks = {cell.name for cell in notebook.task_cells}
            cells = {}
            for cell in notebook.source_cells:
                meta = {"grade": cell.name in points and cell.name not in tasks, "solution": cell.name in solutions,
                        "locked": bool(cell.locked), "task": cell.name in tasks, "grade_id": cell.name,
                        "cell_type": cell.cell_type, "schema_version": 3}
                if cell.name in points:
                    meta["points"] = points[cell.name]
                cells[cell.name] = meta
        return cells


class RestoreHiddenTests(NbGraderPreprocessor):
    """In Autograde.sanitize_preprocessors, just before OverwriteCells: a locked cell that is exactly as the release
    has it (the source with its hidden tests taken out, as generate_assignment took them out) gets its hidden tests
    back here, silently. OverwriteCells then finds its checksum intact, so an honest submission logs no "Attribute
    'checksum' ... has changed" (29 per student before, nbgrader #1961), and a locked cell the student did change
    is still reported and restored by OverwriteCells, as before."""

    def preprocess(self, nb, resources):
        from nbgrader.preprocessors import ClearHiddenTests

        where = resources["nbgrader"]
        with Gradebook(where["db_url"]) as gradebook:
            notebook = gradebook.find_notebook(where["notebook"], where["assignment"])
            locked = {cell.name: cell.source for cell in notebook.source_cells if cell.locked}
        hidden_tests = ClearHiddenTests(config=self.config)  # the course's delimiters
        for cell in nb.cells:
            source = locked.get(claimed_grade_id(cell))
            if source is None or source == cell.source:
                continue
            released = nbformat.from_dict({"source": source})
            if hidden_tests._remove_hidden_test_region(released) and released.source == cell.source:
                cell.source = source
        return nb, resources


def claimed_grade_id(cell) -> str | None:
    nbgrader = cell.get("metadata", {}).get("nbgrader")
    grade_id = nbgrader.get("grade_id") if isinstance(nbgrader, dict) else None
    return grade_id if isinstance(grade_id, str) and grade_id else None


def kept_claims(cells, claims: dict[int, str]) -> dict[str, int]:
    """grade_id -> the index of the one cell that keeps it (see RestoreReleaseMetadata)."""
    from backprop_ninja.grade import extract

    graded_at = extract.answers_from_cells(cells).positions  # where the grader takes each answer from
    kept: dict[str, int] = {}
    for index, grade_id in claims.items():  # in order: the last claim wins ...
        kept[grade_id] = index
    for grade_id, index in graded_at.items():  # ... unless the grader grades another claim of an answer
        if claims.get(index) == grade_id:
            kept[grade_id] = index
    return kept


# Output data a browser shows without running or parsing anything the student chose: text, and images that are
# plain base64 (each goes into <img src="data:...">, unescaped, so a string that is not base64 could close it).
SAFE_TEXT = "text/plain"
SAFE_IMAGES = ("image/png", "image/jpeg", "image/gif")


class StudentOutputsAsText(NbGraderPreprocessor):
    """For the feedback HTML (GenerateFeedback.preprocessors): nothing the student wrote is rendered as HTML or run.

    - Every code cell's display outputs keep only text and base64 images; HTML, JavaScript, SVG, Markdown, LaTeX,
      widgets and anything else become text saying what they were, and output metadata (image sizes, which the
      template writes into attributes unescaped) is dropped.
    - Markdown and raw cells the student wrote (all but the release's locked cells, whose source OverwriteCells
      restored) are shown as a block of text: Markdown would keep raw HTML and javascript: links.
    - The notebook's widget state, which the template turns into scripts, is dropped.
    Stream and error outputs, and code, are escaped by the template already.
    """

    def preprocess(self, nb, resources):
        nb.metadata.pop("widgets", None)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            for out in cell.get("outputs", []):
                if out.output_type in ("display_data", "execute_result"):
                    data_as_text(out)
        elif cell.cell_type == "raw" or not is_locked(cell):
            cell.cell_type = "markdown"
            cell.pop("attachments", None)
            cell.metadata.pop("raw_mimetype", None)
            cell.metadata.pop("format", None)
            cell.source = as_text_block(cell.source)
        return cell, resources


def data_as_text(out) -> None:
    data = out.get("data", {})
    kept = {mime: value for mime, value in data.items() if mime in SAFE_IMAGES and is_base64(value)}
    text = [joined(data[SAFE_TEXT])] if SAFE_TEXT in data else []
    for mime, value in data.items():
        if mime != SAFE_TEXT and mime not in kept:
            text.append(f"[{mime} output, shown as text]\n{joined(value)}")
    if text:
        kept[SAFE_TEXT] = "\n".join(text)
    out.data = kept
    out.metadata = {}


def joined(value) -> str:
    if isinstance(value, list) and all(isinstance(part, str) for part in value):
        return "".join(value)
    return value if isinstance(value, str) else json.dumps(value, indent=1)


def is_base64(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def as_text_block(source) -> str:
    """Markdown that shows `source` verbatim: an indented code block, whose content Markdown escapes."""
    lines = joined(source).splitlines() or [""]
    return "\n".join("    " + line for line in lines)


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

    code = Enum(list(CODE_POLICIES), default_value=ALLOWLIST_CODE, help=(
        "'allowlist' (the default): an answer cell may use only what a gradient needs (grade/allowlist.py); "
        "anything else is not_allowed and never runs. 'any': any Python reaches the sandbox, where the autograd "
        "scan and the run-time blocks apply.")).tag(config=True)

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
                                               shape=self.shape, code=self.code)
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


class NotebookTimeUp(Exception):
    """The whole notebook's time limit ran out; SandboxedExecute stops running cells."""


class SandboxedExecute(Execute):
    """nbgrader's Execute, with three changes.

    - The kernel runs sandboxed (grade/kernel_sandbox.py) unless EngineVerdicts turned isolation off; either way
      it knows that its hidden-test hook is display only (backprop_ninja/hidden.py).
    - A kernel that dies (os._exit, a signal, out of memory) or stays busy after the timeout's interrupt no longer
      fails the whole submission: the cell it was running gets that error, the cells after it stay unrun, and the
      units keep the grader's verdicts. Stock nbgrader would drop the student's autograded notebook and score
      nothing.
    - The whole notebook has a time limit (notebook_timeout), where nbgrader only limits each cell: the cell that
      runs out of it is interrupted and the cells after it stay unrun. The points are not affected: the grader
      decided them before the kernel started.
    """

    notebook_timeout = Integer(300, help=(
        "Seconds the kernel may run the whole notebook, all cells together (nbgrader's Execute.timeout limits "
        "each cell on its own). When it runs out, the running cell is interrupted and the cells below it are not "
        "run; the points come from the grader either way.")).tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        from jupyter_client import AsyncKernelManager
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        from backprop_ninja.grade.kernel_sandbox import SandboxedKernelManager
        from backprop_ninja.hidden import OUTSIDE_VERDICTS_VAR

        state = graded_submission(resources, "SandboxedExecute")
        self.kernel_manager_class = SandboxedKernelManager if state.isolated else AsyncKernelManager
        self.running_cell: int | None = None
        self.deadline = time.monotonic() + self.notebook_timeout
        try:
            with _environment_variable(OUTSIDE_VERDICTS_VAR, "1"):
                return super().preprocess(nb, resources, km)
        except NotebookTimeUp:
            self.note_time_up()
            return self.nb, self.resources
        except (DeadKernelError, CellTimeoutError) as stopped:
            if self.running_cell is None:  # the kernel never ran a cell: a machine problem, not the student's
                raise
            self.note_stopped_kernel(stopped)
            return self.nb, self.resources
        except Exception as broken:  # noqa: BLE001 (the kernel is the student's: whatever it does is theirs)
            # e.g. a kernel out of threads (a thread bomb) sends a large message half-built, and jupyter_client
            # raises "Invalid Signature" while reading it. The points are the grader's, decided already.
            if self.running_cell is None:
                raise
            self.note_stopped_kernel(broken)
            return self.nb, self.resources

    def preprocess_cell(self, cell, resources, index):
        self.running_cell = index
        done = super().preprocess_cell(cell, resources, index)
        if cell.cell_type == "code" and self.seconds_left() <= 0:
            raise NotebookTimeUp
        return done

    def seconds_left(self) -> float:
        return self.deadline - time.monotonic()

    def _get_timeout(self, cell):
        """nbclient's limit for one cell: the cell timeout, or less if the notebook's time runs out first."""
        per_cell = super()._get_timeout(cell)
        left = max(1, math.ceil(self.seconds_left()))
        return left if per_cell is None else min(per_cell, left)

    def note_time_up(self) -> None:
        message = (f"the notebook's time limit ({self.notebook_timeout} s for all cells together) ran out in this "
                   f"cell, so the cells below it were not run; your points come from the grader, which runs every "
                   f"answer cell on its own")
        self.log.warning("cell %d: %s", self.running_cell, message)
        self.nb.cells[self.running_cell].outputs.append(
            new_output("error", ename=NOTEBOOK_TIME_UP, evalue=message, traceback=[f"{NOTEBOOK_TIME_UP}: {message}"]))

    def note_stopped_kernel(self, stopped: Exception) -> None:
        how = {"DeadKernelError": "died", "CellTimeoutError": "kept running after its time limit"}.get(
            type(stopped).__name__, f"stopped answering ({type(stopped).__name__}: {str(stopped)[:120]})")
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
