"""nbgrader configuration for the Backprop Ninja course (nbgrader 0.9.6).

The defaults need hardening; each line below says which hole it closes (measured, see docs/nbgrader.md).
"""
import os
import sys

from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearHiddenTests, ClearMarkScheme,
                                    ClearOutput, DeduplicateIds, Execute, GetGrades, IncludeHeaderFooter, LimitOutput,
                                    LockCells, OverwriteCells, OverwriteKernelspec, SaveAutoGrades)

from backprop_ninja.lateness.nbgrader_side import CourseLatePenalty, SyncDueDate
from backprop_ninja.nbgrader_feedback import OfflineMathFeedback
from backprop_ninja.nbgrader_plugins import (ApplyEngineVerdicts, EngineVerdicts, RestoreHiddenTests,
                                             RestoreReleaseMetadata, SandboxedExecute, ScoreOnErrorsOnly,
                                             ShortTracebacks, StudentOutputsAsText)

c = get_config()  # noqa: F821 (provided by nbgrader when it loads this file)

# Kernels inherit nbgrader's environment: point the notebook's data cell at the kit's verified names.txt
# (from `backprop-ninja setup-data`), since the autograded folders hold no copy and graders are often offline.
_NAMES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "names.txt")
if os.path.isfile(_NAMES):
    os.environ.setdefault("BACKPROP_NINJA_NAMES", _NAMES)


def _seconds(variable: str, default: int) -> int:
    """A time limit in seconds; the environment variable overrides it (the tests use short ones).

    A bad value falls back to the default with a warning instead of raising: nbgrader only logs an exception in
    this file and then runs with none of the hardening below.
    """
    raw = os.environ.get(variable, "").strip()
    if raw.isdigit() and int(raw) >= 1:
        return int(raw)
    if raw:
        print(f"nbgrader_config.py: {variable}={raw!r} is not a whole number of seconds (at least 1); using "
              f"{default} s. Fix or unset the variable.", file=sys.stderr)
    return default


c.CourseDirectory.course_id = "backprop_ninja"
c.CourseDirectory.solution_directory = "solutions"
# The text source (backprop_ninja.py) holds the solutions: never copy it into a release or an autograded folder.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", ".*", "*.py", "names.txt"]

# Time: a per-cell limit, a limit for the whole notebook (nbgrader has none: six cells of 8 s each took 62 s; the points
# are the grader's, decided before the kernel starts, so the kernel is only cut short), and no graceful kernel
# shutdown (0.5 s each, sometimes 3.4 s; identical scores).
c.Execute.timeout = _seconds("BACKPROP_NINJA_CELL_TIMEOUT", 180)
c.SandboxedExecute.notebook_timeout = _seconds("BACKPROP_NINJA_NOTEBOOK_TIMEOUT", 300)
c.Execute.shutdown_kernel = "immediate"

# Student metadata is not read: every cell's nbgrader metadata (grade_id, points, flags) is rebuilt from the gradebook
# before nbgrader's own steps, which stop with a KeyError on a duplicated or relabelled grade_id.
c.Autograde.sanitize_preprocessors = [ClearOutput, RestoreReleaseMetadata, DeduplicateIds, OverwriteKernelspec,
                                      RestoreHiddenTests, OverwriteCells, CheckCellMetadata]

# Points come from the grader, not from the student's kernel: EngineVerdicts grades the notebook before the kernel
# starts, SandboxedExecute runs the kernel in a sandbox (no network, no course folder, no gradebook) and survives a
# kernel that dies, and ApplyEngineVerdicts writes each unit's verdict into its test cell, which SaveAutoGrades
# scores. ScoreOnErrorsOnly stays as a second line, should a grade cell ever keep the kernel's outputs: stderr (a torch
# UserWarning) and execute_result (a forged `sys.displayhook(1.0)`) decide nothing.
c.Autograde.autograde_preprocessors = [EngineVerdicts, SandboxedExecute, ScoreOnErrorsOnly, ApplyEngineVerdicts,
                                       ClearMetadataPreprocessor, LimitOutput, SaveAutoGrades, SyncDueDate,
                                       AssignLatePenalties, CheckCellMetadata]
# "required": autograde fails, naming the fix, where bubblewrap cannot sandbox student code. "off" (or
# BACKPROP_NINJA_NO_ISOLATION=1) grades without the sandbox, and every test cell says so.
c.EngineVerdicts.isolation = "required"
# An Exercise 1 answer right by luck (it skips its local rule and only matches because a gradient is exactly 0, as
# the rule probe shows) keeps its points by default, with a note; True gives it 0 points (docs/grader.md).
c.EngineVerdicts.strict_rules = False
c.EngineVerdicts.shape = "strict"  # "lenient": size-1 dimensions may differ in intermediates' gradients

# Due date and late penalty, in this one place for nbgrader and for `backprop-ninja grade` (README: "Due dates and
# late penalties"). SyncDueDate writes them into the gradebook; nbgrader's AssignLatePenalties asks CourseLatePenalty
# for the points, by the same rule as the kit's batch (backprop_ninja/lateness/rule.py). Unset due: no penalties.
c.AssignLatePenalties.plugin_class = CourseLatePenalty
# c.Lateness.due = "2026-12-01 23:59"          # no zone: c.Lateness.timezone (default UTC)
# c.Lateness.timezone = "Europe/Berlin"
# c.Lateness.grace_minutes = 15                # this late costs nothing
# c.Lateness.penalty_per_day = 0.1             # of the maximum points, per started day late
# c.Lateness.max_penalty = 0.5                 # the most lateness costs
# c.Lateness.extensions = {"ada": "2d", "ben": "2026-12-05 12:00"}  # extra time or a personal due date
# c.Lateness.extensions_file = "extensions.csv"  # columns student_id,extension; read from the course folder

# Deleted or metadata-stripped test cells are put back from the gradebook and graded, instead of scoring 0 quietly.
c.OverwriteCells.add_missing_cells = True

# Hidden tests stay hidden: out of feedback (cell sources and tracebacks) and out of generated solutions. Nothing the
# student wrote runs in the browser that opens the feedback: HTML, JavaScript and Markdown the student wrote are text.
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, ShortTracebacks, StudentOutputsAsText,
                                    CSSHTMLHeaderPreprocessor]
# Math in the feedback is MathML written at build time: it shows offline, and the page loads no MathJax from a CDN.
c.GenerateFeedback.exporter_class = OfflineMathFeedback
c.GenerateSolution.preprocessors = [IncludeHeaderFooter, LockCells, ClearOutput, ClearMarkScheme, ClearHiddenTests,
                                    Execute]
