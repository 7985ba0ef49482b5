"""The nbgrader course grades right: real `nbgrader` commands on a temporary course built from the text source.

One session fixture builds the course once, hands in every submission and runs the expensive commands side by side
(autograde runs with our config, sandboxed and not, a control run with stock nbgrader's chain, a run where bubblewrap
cannot be found, generate_solution, the validator and the standalone grader); the tests below only read what those
runs left behind. docs/nbgrader.md explains each check.
"""
from __future__ import annotations

import html
import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from traitlets.config import Application

from backprop_ninja import assign, examples, units
from backprop_ninja.assign import ASSIGNMENT, REPO, solution_cells
from backprop_ninja.grade import isolation
from backprop_ninja.grade.verdict import SubmissionResult
from backprop_ninja.nbgrader_plugins import (NO_ISOLATION_VAR, STATE_KEY, ApplyEngineVerdicts, EngineVerdicts,
                                             GradedSubmission, SandboxedExecute, ScoreOnErrorsOnly)
from backprop_ninja.sandboxed import graded_outside
from corpus import CORPUS, write_submission
from folders import own_folder
from nbgrader_course import (CELL_TIMEOUT_VAR, TEST_CELL_PREFIX, add_cells_after, cell_after, cell_with_id,
                             course_env, finish, hand_in,
                             make_course, notebook_at, read_notebook, start, start_nbgrader, stop, stream_text,
                             unit_scores)

UNIT_POINTS = {unit.grade_id: unit.points for unit in units.UNITS}
KEEP_COURSE_VAR = "BACKPROP_NINJA_KEEP_TEST_COURSE"  # set it to look at a failed run
HIDDEN_TEST_MARKERS = ("BEGIN HIDDEN TESTS", "grade_unit", "backprop_ninja.hidden")

# The looping cell is stopped after this many seconds. Every cell of that notebook has this limit, so it must exceed
# the slowest ordinary cell (training on the short schedule, evaluating) with a wide margin for a busy machine. The
# grader no longer runs inside a cell, so it does not count.
LOOP_CELL_TIMEOUT = "30"

WARNING_TEXT = "a harmless torch-style warning"
FORGED_POINTS = 1.0
LOOPING_UNIT = "ex1_bnvar"
FORGED_WRONG_UNIT = "ex3_hprebn"
TAMPERED = {"deleted": "ex1_probs", "emptied": "ex1_counts_sum_inv", "retyped": "ex1_counts_sum"}

# Emits a UserWarning on stderr inside every later check() (which calls torch.equal; Exercise 4's calls
# torch.allclose), as torch itself can.
NOISY_ALLCLOSE = f"""
import warnings
warnings.simplefilter("always", UserWarning)
def _noisy(quiet):
    def noisy(*args, **kwargs):
        warnings.warn({WARNING_TEXT!r}, UserWarning)
        return quiet(*args, **kwargs)
    return noisy
torch.equal, torch.allclose = _noisy(torch.equal), _noisy(torch.allclose)
"""
# Replaces the hidden-test hook in the kernel with one that prints the grader's "ok" line and passes every unit.
FAKE_HOOK = """
import sys as _sys, types as _types
def _always_ok(unit):
    print(f"{unit}: ok (1/1) right on all 4 replays")
    return True
_fake = _types.ModuleType("backprop_ninja.hidden")
_fake.grade_unit = _always_ok
_sys.modules["backprop_ninja.hidden"] = _fake
"""
# What a kernel could do to the course if nothing stopped it. Each attempt reports "done" or what stopped it, and
# never fails the cell. Opening gradebook.db for writing is all that rewriting it with sqlite3 needs.
ATTACK_MARKER = "ATTACK "
ATTACK = """
import json as _json, os as _os, socket as _socket
def _attempt(action):
    try:
        action()
        return "done"
    except Exception as error:
        return "failed: " + type(error).__name__
def _plant():
    with open({planted!r}, "w") as f:
        f.write("planted by the kernel")
_report = {{
    "gradebook": _attempt(lambda: open({gradebook!r}, "r+b").close()),
    "course folder": _attempt(lambda: _os.listdir({root!r})),
    "classmate": _attempt(lambda: open({classmate!r}).read(100)),
    "plant a file": _attempt(_plant),
    "network": _attempt(lambda: _socket.create_connection(("127.0.0.1", {port}), timeout=5).close()),
    "start a process": _attempt(lambda: __import__("subprocess").run(["true"], check=True)),
}}
print({marker!r} + _json.dumps({{"uid": _os.getuid(), **_report}}))
"""
# Makes the test cell's first output an execute_result worth FORGED_POINTS; `check` exists only in the notebook.
FORGED_CHECK = f"""
import sys
if "check" in globals():
    _honest_check = check
    def check(name):
        sys.displayhook({FORGED_POINTS!r})
        return _honest_check(name)
"""

MAIN_STUDENTS = ("ada", "ben", "cleo", "dora")          # one autograde run, --student='[a-d]*'
CRAFTED_STUDENTS = ("x_tricks", "x_tamper", "x_loop")  # x_t* in one run, x_loop in another
KERNEL_STUDENTS = ("x_attack", "x_exit", "x_fake")     # one run, --student='x_[aef]*': what a kernel might try
UNSANDBOXED_STUDENT = "off_attack"                     # x_attack's attack with isolation off: the attack works
CONTROL_STUDENT = "raw_tricks"                         # x_tricks' notebook, graded by stock nbgrader's chain
FAKE_CONTROL_STUDENT = "raw_fake"                      # x_fake's notebook, graded by stock nbgrader's chain
NO_BWRAP_STUDENT = "w_no_bwrap"                        # autograded where bubblewrap is not on PATH
ATTACKED_CELL = "ex1_logprobs"                         # x_attack's and x_fake's extra code: a cell after this one
EXITING_UNIT = "ex1_bndiff2"                           # x_exit's answer ends the kernel with os._exit(1)
NOT_LIKE_THE_STANDALONE_GRADER = (CONTROL_STUDENT, FAKE_CONTROL_STUDENT, NO_BWRAP_STUDENT)
# A sample of the fixture corpus (tests/corpus.py), one autograde run of its own (y_*): mistakes, alternative forms
# and cheats, to show nbgrader and the standalone grader agree beyond the examples. Faults are left out: a kernel
# killed or hung costs more in nbgrader by design (docs/nbgrader.md), and the full corpus would cost ~10 minutes.
CORPUS_SAMPLE = ("bndiff_one_branch", "ex3_bessel_dropped", "alt_two_cell_accumulation",
                 "alt_helper_from_an_earlier_cell", "cheat_reads_grad", "cheat_hard_coded_batch",
                 "cheat_patched_allclose")
CORPUS_STUDENTS = tuple(f"y_{name}" for name in CORPUS_SAMPLE)


@dataclass
class GradedCourse:
    root: Path
    standalone: dict[str, dict[str, float]]  # student -> grade_id -> the standalone grader's points
    validation: dict                         # nbgrader.validator.Validator().validate(solution source)
    no_bwrap_run: tuple[int, str]            # exit code and log of the autograde run that could not find bwrap
    logs: dict[str, str]                     # the logs of the honest run ([a-d]*) and of the crafted one (x_t*)


# ---- crafted submissions ----

def example_notebook(student: str) -> nbformat.NotebookNode:
    return read_notebook(REPO / "examples" / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")


def append_to_cell(nb: nbformat.NotebookNode, grade_id: str, code: str) -> None:
    cell = cell_with_id(nb, grade_id)
    cell.source = cell.source.rstrip("\n") + "\n" + code.strip("\n")


def tricks_notebook() -> nbformat.NotebookNode:
    """ada, plus a warning in every test cell, plus a wrong answer whose test cell forges an execute_result."""
    nb = example_notebook("ada")
    add_cells_after(nb, "ex1_logprobs", [nbformat.v4.new_code_cell(NOISY_ALLCLOSE.strip("\n"))])
    cell_with_id(nb, FORGED_WRONG_UNIT).source = examples.BEN_ANSWERS[FORGED_WRONG_UNIT] + "\n" + FORGED_CHECK
    return nb


def tampered_notebook() -> nbformat.NotebookNode:
    """ada with one test cell deleted, one emptied and one retyped to markdown."""
    nb = example_notebook("ada")
    nb.cells.remove(cell_with_id(nb, TEST_CELL_PREFIX + TAMPERED["deleted"]))
    cell_with_id(nb, TEST_CELL_PREFIX + TAMPERED["emptied"]).source = ""
    retyped = cell_with_id(nb, TEST_CELL_PREFIX + TAMPERED["retyped"])
    retyped.cell_type = "markdown"
    for key in ("outputs", "execution_count"):
        retyped.pop(key, None)
    return nb


def looping_notebook() -> nbformat.NotebookNode:
    """ada with an endless loop before one answer (it waits rather than spins, to spare a shared machine)."""
    nb = example_notebook("ada")
    cell = cell_with_id(nb, LOOPING_UNIT)
    cell.source = "import time\nwhile True:\n    time.sleep(0.1)\n" + cell.source
    return nb


def fake_hook_notebook() -> nbformat.NotebookNode:
    """ben (typical mistakes) with the hidden-test hook replaced by one that passes everything."""
    nb = example_notebook("ben")
    add_cells_after(nb, ATTACKED_CELL, [nbformat.v4.new_code_cell(FAKE_HOOK.strip("\n"))])
    return nb


def attack_notebook(root: Path, student: str, port: int) -> nbformat.NotebookNode:
    """ada, plus an answer cell that tries the gradebook, the course folder, a classmate's submission, planting a
    file in the course folder (planted_by_<student>) and the network (a listener of the test on `port`)."""
    nb = example_notebook("ada")
    attack = ATTACK.format(
        gradebook=str(root / "gradebook.db"), root=str(root), planted=str(root / f"planted_by_{student}"),
        classmate=str(notebook_at(root, "submitted", "ada")), port=port, marker=ATTACK_MARKER)
    add_cells_after(nb, ATTACKED_CELL, [nbformat.v4.new_code_cell(attack.strip("\n"))])
    return nb


def exiting_notebook() -> nbformat.NotebookNode:
    """ada with one answer that ends the process running it."""
    nb = example_notebook("ada")
    append_to_cell(nb, EXITING_UNIT, "import os\nos._exit(1)")
    return nb


def corpus_notebook(name: str, scratch: Path, release, solutions) -> nbformat.NotebookNode:
    submission = next(s for s in CORPUS if s.name == name)
    return read_notebook(write_submission(submission, scratch / name, release, solutions))


def solution_filled_release(root: Path) -> nbformat.NotebookNode:
    return examples.filled(read_notebook(notebook_at(root, "release")), solution_cells(root))


# ---- the runs ----

STANDALONE_SCRIPT = """
import json, sys
from backprop_ninja.grade.engine import grade_notebook
paths = json.loads(sys.argv[1])
print(json.dumps({s: {v.unit: v.points for v in grade_notebook(p).verdicts} for s, p in paths.items()}))
"""
VALIDATE_SCRIPT = """
import json, sys
from nbgrader.validator import Validator
print(json.dumps(Validator().validate(sys.argv[1])))
"""


def start_python(script: str, arg: str, env: dict[str, str], cwd: Path) -> subprocess.Popen:
    return start([sys.executable, "-c", script, arg], cwd, env)


def json_from(proc: subprocess.Popen, what: str):
    out, err = proc.communicate()
    assert proc.returncode == 0, f"{what} exited {proc.returncode}:\n{err[-4000:]}"
    return json.loads(out.strip().splitlines()[-1])


def stock_chain_options() -> list[str]:
    """Our autograde chain as stock nbgrader would run it (points from the kernel's hidden-test hook, stderr and
    execute_results scored), as --Autograde.autograde_preprocessors options."""
    from nbgrader.preprocessors import Execute

    chain = load_course_config().Autograde.autograde_preprocessors
    ours = (EngineVerdicts, SandboxedExecute, ScoreOnErrorsOnly, ApplyEngineVerdicts)
    missing = [pp.__name__ for pp in ours if pp not in chain]
    assert not missing, f"nbgrader_config.py's autograde chain no longer has {missing}"
    stock = [Execute if pp is SandboxedExecute else pp for pp in chain if pp not in ours or pp is SandboxedExecute]
    return [f"--Autograde.autograde_preprocessors={pp.__module__}.{pp.__name__}" for pp in stock]


def private_tmp(course_dir: Path) -> Path:
    path = course_dir / "private" / "tmp"
    path.mkdir(parents=True)
    path.parent.chmod(0o700)
    return path


def environment_without_bwrap(env: dict[str, str]) -> dict[str, str]:
    """nbgrader's environment with only the venv's bin on PATH (nbgrader needs `alembic` from it), so no `bwrap`."""
    venv_bin = str(Path(sys.executable).parent)
    assert not (Path(venv_bin) / "bwrap").exists()
    return {**env, "PATH": venv_bin}


def load_course_config(root: Path = REPO):
    """nbgrader_config.py loaded as nbgrader loads it from the working folder (traitlets' load_config_file)."""
    app = Application()
    app.load_config_file("nbgrader_config", path=str(root))
    return app.config


@pytest.fixture(scope="session")
def course_dir():
    with own_folder("backprop-ninja-nbgrader-", KEEP_COURSE_VAR) as path:
        yield path


@pytest.fixture(scope="session")
def network_listener():
    """A TCP listener on localhost: a kernel that can reach it has the grader's network."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


@pytest.fixture(scope="session")
def graded(course_dir, names_file, release, solutions, network_listener) -> GradedCourse:
    root = make_course(course_dir, names_file)
    env = course_env(names_file)
    submissions = {
        "ada": example_notebook("ada"), "ben": example_notebook("ben"), "cleo": example_notebook("cleo"),
        "dora": solution_filled_release(root), "x_tricks": tricks_notebook(), "x_tamper": tampered_notebook(),
        "x_loop": looping_notebook(), "x_attack": attack_notebook(root, "x_attack", network_listener),
        "x_exit": exiting_notebook(), "x_fake": fake_hook_notebook(),
        UNSANDBOXED_STUDENT: attack_notebook(root, UNSANDBOXED_STUDENT, network_listener),
        CONTROL_STUDENT: tricks_notebook(), FAKE_CONTROL_STUDENT: fake_hook_notebook(),
        NO_BWRAP_STUDENT: example_notebook("ada"),
        **{student: corpus_notebook(name, course_dir / "corpus", release, solutions)
           for student, name in zip(CORPUS_STUDENTS, CORPUS_SAMPLE)},
    }
    paths = {student: str(hand_in(root, student, nb)) for student, nb in submissions.items()}
    graded_alike = {s: p for s, p in paths.items() if s not in NOT_LIKE_THE_STANDALONE_GRADER}

    # nbgrader takes one --student glob per run; several runs on one SQLite gradebook side by side are fine.
    # The looping student gets a run of its own: its cells mostly wait, which overlaps with everything else.
    autograde = ("autograde", ASSIGNMENT, "--force")
    main_run = start_nbgrader(root, env, *autograde, "--student=[a-d]*")
    other_runs = [
        start_nbgrader(root, {**env, CELL_TIMEOUT_VAR: LOOP_CELL_TIMEOUT}, *autograde, "--student=x_loop"),
        start_nbgrader(root, env, *autograde, "--student=x_t*"),
        start_nbgrader(root, env, *autograde, "--student=y_*"),
        # TMPDIR deep in a folder of root's: the sandboxed kernel's own folder must not go there, since the sandbox
        # user cannot pass through the parents bwrap makes for it (the kernel would die before it starts)
        start_nbgrader(root, {**env, "TMPDIR": str(private_tmp(course_dir))}, *autograde, "--student=x_[aef]*"),
        start_nbgrader(root, {**env, NO_ISOLATION_VAR: "1"}, *autograde, f"--student={UNSANDBOXED_STUDENT}"),
        start_nbgrader(root, env, *autograde, "--student=raw_*", *stock_chain_options()),
        start_nbgrader(root, env, "generate_solution", ASSIGNMENT, "--force"),
    ]
    no_bwrap = start_nbgrader(root, environment_without_bwrap(env), *autograde, f"--student={NO_BWRAP_STUDENT}")
    standalone = start_python(STANDALONE_SCRIPT, json.dumps(graded_alike), env, root)
    validation = start_python(VALIDATE_SCRIPT, str(notebook_at(root, "source")), env, root)
    started = [main_run, *other_runs, no_bwrap, standalone, validation]
    try:
        logs = {"honest": finish(main_run)}
        feedback = start_nbgrader(root, env, "generate_feedback", ASSIGNMENT, "--force", "--student=[a-d]*")
        started.append(feedback)
        for run in [*other_runs, feedback]:
            log = finish(run)
            if run is other_runs[1]:
                logs["crafted"] = log
        no_bwrap_log = "".join(no_bwrap.communicate())
        return GradedCourse(root, json_from(standalone, "the standalone grader"),
                            json_from(validation, "the validator"), (no_bwrap.returncode, no_bwrap_log), logs)
    finally:
        stop(started)


def assert_points(root: Path, student: str, expected: dict[str, float]) -> None:
    got = {unit: score.points for unit, score in unit_scores(root, student).items()}
    wrong = {unit: f"got {got.get(unit)}, expected {points}" for unit, points in expected.items()
             if got.get(unit) != points}
    assert set(got) == set(expected) and not wrong, f"{student}: {wrong or sorted(set(got) ^ set(expected))}"


def full_marks_except(*lost: str) -> dict[str, float]:
    return {unit: (0.0 if unit in lost else points) for unit, points in UNIT_POINTS.items()}


# ---- 1. acceptance ----

def test_blank_release_scores_zero_everywhere(graded):
    assert_points(graded.root, "cleo", full_marks_except(*UNIT_POINTS))


@pytest.mark.parametrize("student", ["ada", "dora"])
def test_correct_answers_score_full_marks(graded, student):
    assert_points(graded.root, student, full_marks_except())
    assert not any(score.needs_manual_grade for score in unit_scores(graded.root, student).values())


def test_typical_mistakes_lose_exactly_their_units(graded):
    assert_points(graded.root, "ben", full_marks_except(*examples.EXPECTED_LOST))


@pytest.mark.parametrize("student, status", [("ada", "ok"), ("cleo", "missing")])
def test_test_cells_hold_the_graders_verdict_and_nothing_else(graded, student, status):
    """Sandboxed (the default): each test cell shows one verdict line, plus an error where the unit was lost; what
    the kernel printed there (the display-only hook's line, its failed assert) is gone."""
    autograded = read_notebook(notebook_at(graded.root, "autograded", student))
    for unit, points in UNIT_POINTS.items():
        outputs = cell_with_id(autograded, TEST_CELL_PREFIX + unit).outputs
        line = stream_text(cell_with_id(autograded, TEST_CELL_PREFIX + unit), "stdout")
        earned = points if status == "ok" else 0
        assert line.startswith(f"{unit}: {status} ({earned:g}/{points:g}) "), f"{student}, {unit}: {line!r}"
        assert "without isolation" not in line and graded_outside.MESSAGE not in line
        errors = [out.ename for out in outputs if out.output_type == "error"]
        assert errors == ([] if status == "ok" else ["AssertionError"]), f"{student}, {unit}: {errors}"
        assert len(outputs) == 1 + len(errors), f"{student}, {unit}: {outputs}"


# ---- 2. the solution source validates ----

def test_solution_source_passes_the_validator(graded):
    failed = [f"test cell {first_line(cell['source'])!r}: {last_error_line(cell.get('error', ''))}"
              for cell in graded.validation.get("failed", [])]
    assert graded.validation == {}, "\n".join(failed) or graded.validation


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def last_error_line(error_html: str) -> str:
    """The `Name: message` line of a traceback the validator rendered as HTML."""
    lines = html.unescape(re.sub(r"<[^>]+>", "", error_html)).strip().splitlines()
    return next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else "")


# ---- 3. hardening ----

def test_warning_on_stderr_does_not_zero_a_correct_answer(graded):
    lost = (FORGED_WRONG_UNIT,)
    assert_points(graded.root, "x_tricks", full_marks_except(*lost))
    # The control run (stock nbgrader's chain) proves the warning reached every test cell's stderr, where stock
    # nbgrader scores it 0; the forged unit is left to the next test.
    control = read_notebook(notebook_at(graded.root, "autograded", CONTROL_STUDENT))
    control_scores = unit_scores(graded.root, CONTROL_STUDENT)
    for unit in UNIT_POINTS:
        if unit in lost:
            continue
        assert WARNING_TEXT in stream_text(cell_with_id(control, TEST_CELL_PREFIX + unit), "stderr"), unit
        assert control_scores[unit].points == 0, f"{unit}: stock nbgrader should have scored the warning 0"


def test_forged_execute_result_earns_nothing(graded):
    assert unit_scores(graded.root, "x_tricks")[FORGED_WRONG_UNIT].points == 0
    # With stock nbgrader's chain the same wrong answer is paid the forged value: the attack works there.
    assert unit_scores(graded.root, CONTROL_STUDENT)[FORGED_WRONG_UNIT].points == FORGED_POINTS


def test_deleted_emptied_and_retyped_test_cells_are_restored_and_graded(graded):
    assert_points(graded.root, "x_tamper", full_marks_except())
    autograded = read_notebook(notebook_at(graded.root, "autograded", "x_tamper"))
    for how, unit in TAMPERED.items():
        cell = cell_with_id(autograded, TEST_CELL_PREFIX + unit)
        assert cell.cell_type == "code", f"the {how} test cell of {unit} was not restored as code"
        # the restored test cell carries its unit's verdict from the grader
        assert f"{unit}: ok" in stream_text(cell, "stdout"), f"the {how} test cell of {unit} got no verdict"
        assert not unit_scores(graded.root, "x_tamper")[unit].needs_manual_grade


def test_feedback_shows_no_hidden_tests(graded):
    # The autograded notebooks hold the hidden tests (so there is something to leak) ...
    assert "grade_unit" in notebook_at(graded.root, "autograded", "ben").read_text()
    feedback = sorted((graded.root / "feedback").glob(f"*/{ASSIGNMENT}/{ASSIGNMENT}.html"))
    assert {path.parts[-3] for path in feedback} == set(MAIN_STUDENTS)  # ben and cleo fail hidden tests
    for path in feedback:
        html = path.read_text()
        leaked = [marker for marker in HIDDEN_TEST_MARKERS if marker in html]
        assert not leaked, f"{path.relative_to(graded.root)} shows hidden-test text: {leaked}"
    # ... and ben's feedback does show that hidden tests failed, without their source.
    assert "AssertionError" in (graded.root / "feedback" / "ben" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()


def test_feedback_math_renders_offline(graded):
    """The feedback's formulas are MathML written by generate_feedback (OfflineMathFeedback): the page loads no
    script or style from the network, and headless Chromium, with every request but file:// refused, lays a
    fraction out as a fraction (taller than a letter beside it) rather than showing TeX."""
    from playwright.sync_api import sync_playwright

    from browser import CHROMIUM_ARGS, chromium_path

    page_file = graded.root / "feedback" / "ben" / ASSIGNMENT / f"{ASSIGNMENT}.html"
    page_html = page_file.read_text()
    assert "mathjax" not in re.sub(r"<!--.*?-->", "", page_html, flags=re.S).lower()  # nbgrader's comment aside
    assert not re.search(r"<(script|link|img)[^>]*\b(src|href)=[\"']?(https?:)?//", page_html, re.I)
    assert page_html.count("<math ") >= 10 and r"\frac{" not in page_html
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            refused = []
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                       else (refused.append(route.request.url), route.abort()))
            page.goto(page_file.as_uri())
            heights = page.evaluate("""() => {
                const fraction = document.querySelector('math mfrac');
                const letter = document.querySelector('math mi');
                return [fraction.getBoundingClientRect().height, letter.getBoundingClientRect().height];
            }""")
        finally:
            browser.close()
    assert refused == []
    assert heights[0] > 1.5 * heights[1] > 0, heights


@pytest.mark.parametrize("where", ["committed", "generated"])
def test_solutions_show_no_hidden_tests(graded, where):
    path = notebook_at(REPO if where == "committed" else graded.root, "solutions")
    sources = "\n".join(cell.source for cell in read_notebook(path).cells)
    assert "dlogprobs[range(n), Yb] = -1.0 / n" in sources, f"{path} does not hold the solutions"
    assert 'check("logprobs")' in sources, f"{path} lost the visible part of the test cells"
    text = path.read_text() + sources  # the raw file also covers outputs, metadata and cell ids
    leaked = [marker for marker in HIDDEN_TEST_MARKERS if marker in text]
    assert not leaked, f"{path} shows hidden-test text: {leaked}"


def test_config_sets_cell_timeout_and_immediate_shutdown(monkeypatch):
    from nbgrader.preprocessors import Execute

    monkeypatch.delenv(CELL_TIMEOUT_VAR, raising=False)
    execute = Execute(config=load_course_config())
    assert execute.timeout == 180
    assert execute.shutdown_kernel == "immediate"
    monkeypatch.setenv(CELL_TIMEOUT_VAR, "15")
    assert Execute(config=load_course_config()).timeout == 15


def test_config_limits_the_whole_notebook_and_reads_no_student_metadata_or_markup(monkeypatch):
    """The attacks these close run in tests/security/test_attacks_nbgrader.py; here: the config wires them up."""
    from nbgrader.preprocessors import ClearOutput, DeduplicateIds

    from backprop_ninja.nbgrader_plugins import RestoreReleaseMetadata, StudentOutputsAsText

    monkeypatch.delenv("BACKPROP_NINJA_NOTEBOOK_TIMEOUT", raising=False)
    config = load_course_config()
    assert SandboxedExecute(config=config).notebook_timeout == 300
    # before nbgrader's first step that reads grade_ids
    sanitize = config.Autograde.sanitize_preprocessors
    assert sanitize[:3] == [ClearOutput, RestoreReleaseMetadata, DeduplicateIds], sanitize
    assert StudentOutputsAsText in config.GenerateFeedback.preprocessors
    monkeypatch.setenv("BACKPROP_NINJA_NOTEBOOK_TIMEOUT", "20")
    assert SandboxedExecute(config=load_course_config()).notebook_timeout == 20


def test_bad_cell_timeout_keeps_the_default_and_says_so(monkeypatch, capsys):
    from nbgrader.preprocessors import Execute

    monkeypatch.setenv(CELL_TIMEOUT_VAR, "soon")
    config = load_course_config()
    assert Execute(config=config).timeout == 180
    assert CELL_TIMEOUT_VAR in capsys.readouterr().err
    assert config.OverwriteCells.add_missing_cells  # the rest of the hardening is still loaded


def test_endless_loop_costs_only_its_own_unit(graded):
    assert_points(graded.root, "x_loop", full_marks_except(LOOPING_UNIT))
    autograded = read_notebook(notebook_at(graded.root, "autograded", "x_loop"))
    errors = [out.ename for out in cell_with_id(autograded, LOOPING_UNIT).outputs if out.output_type == "error"]
    assert "CellTimeoutError" in errors, f"the looping cell was not stopped by the cell timeout; its errors: {errors}"


def test_text_source_with_solutions_stays_in_source(graded):
    assert assign.text_source(graded.root).is_file()
    # no module beside the notebook: a backprop_ninja.py there would shadow the package in the kernel
    assert not list((graded.root / "source" / ASSIGNMENT).glob("*.py"))
    copied = [str(path.relative_to(graded.root)) for folder in ("release", "autograded", "solutions", "feedback")
              for path in (graded.root / folder).rglob("*.py")]
    assert not copied, f"CourseDirectory.ignore let the text source through: {copied}"


def test_gradebook_is_never_committed():
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert not [name for name in tracked.splitlines() if name.endswith(".db")]
    ignored = subprocess.run(["git", "check-ignore", "-q", "gradebook.db"], cwd=REPO)
    assert ignored.returncode == 0, "gradebook.db is not git-ignored"


# ---- 4. points come from the grader, and the kernel is sandboxed ----

def test_grader_decides_whatever_the_kernel_prints(graded):
    """x_fake is ben with the hidden-test hook replaced in sys.modules by one that prints an "ok" line and passes."""
    assert_points(graded.root, "x_fake", full_marks_except(*examples.EXPECTED_LOST))
    autograded = read_notebook(notebook_at(graded.root, "autograded", "x_fake"))
    for unit in examples.EXPECTED_LOST:
        cell = cell_with_id(autograded, TEST_CELL_PREFIX + unit)
        assert not stream_text(cell, "stdout").startswith(f"{unit}: ok"), f"{unit}: the fake verdict was kept"
        assert [out.ename for out in cell.outputs if out.output_type == "error"] == ["AssertionError"], unit
    # The control: with stock nbgrader's chain (points from the hook in the kernel) the fake pays in full.
    assert_points(graded.root, FAKE_CONTROL_STUDENT, full_marks_except())


def attack_report(root: Path, student: str) -> dict:
    """What the attack code in `student`'s kernel managed, from the output of its cell (the one added right after
    ATTACKED_CELL) in the autograded notebook."""
    autograded = read_notebook(notebook_at(root, "autograded", student))
    text = stream_text(cell_after(autograded, ATTACKED_CELL), "stdout")
    found = [line for line in text.splitlines() if line.startswith(ATTACK_MARKER)]
    assert len(found) == 1, f"{student}: the attack did not report once; its cell printed {text[-600:]!r}"
    return json.loads(found[0][len(ATTACK_MARKER):])


def test_sandboxed_kernel_reaches_no_course_file_and_no_network(graded):
    # The control: the same code in an unsandboxed kernel (isolation off) does every one of these things.
    control = attack_report(graded.root, UNSANDBOXED_STUDENT)
    assert {what: outcome for what, outcome in control.items() if what != "uid"} == \
        {what: "done" for what in control if what != "uid"}, control
    assert (graded.root / f"planted_by_{UNSANDBOXED_STUDENT}").exists()
    # Sandboxed, every attempt fails, the kernel is the sandbox's user, and the points are the grader's.
    report = attack_report(graded.root, "x_attack")
    failed = {what: outcome for what, outcome in report.items() if what != "uid" and outcome.startswith("failed")}
    assert len(failed) == len(report) - 1, report
    assert report["uid"] == (isolation.KERNEL_UID if os.geteuid() == 0 else os.getuid())
    assert not (graded.root / "planted_by_x_attack").exists()
    assert_points(graded.root, "x_attack", full_marks_except())


def test_isolation_off_is_written_into_every_test_cell(graded):
    autograded = read_notebook(notebook_at(graded.root, "autograded", UNSANDBOXED_STUDENT))
    for unit in UNIT_POINTS:
        line = stream_text(cell_with_id(autograded, TEST_CELL_PREFIX + unit), "stdout")
        assert line.startswith(f"{unit}: ok (") and f"[graded without isolation: {NO_ISOLATION_VAR}=1]" in line, line
    assert_points(graded.root, UNSANDBOXED_STUDENT, full_marks_except())


def test_dead_kernel_costs_only_the_unit_that_killed_it(graded):
    # Stock nbgrader drops the whole submission when its kernel dies; the grader ran each answer on its own.
    assert_points(graded.root, "x_exit", full_marks_except(EXITING_UNIT))
    autograded = read_notebook(notebook_at(graded.root, "autograded", "x_exit"))
    errors = [out.ename for out in cell_with_id(autograded, EXITING_UNIT).outputs if out.output_type == "error"]
    assert errors == ["DeadKernelError"], errors
    assert not cell_with_id(autograded, "eval").outputs, "cells after the kernel died should not have run"


def test_autograde_fails_naming_the_fix_where_isolation_cannot_be_set_up(graded):
    returncode, log = graded.no_bwrap_run
    assert returncode != 0, "autograde graded without bubblewrap, unsandboxed, although isolation is required"
    assert "bubblewrap" in log and NO_ISOLATION_VAR in log and "EngineVerdicts.isolation" in log, log[-3000:]
    assert not notebook_at(graded.root, "autograded", NO_BWRAP_STUDENT).exists()
    assert not any(score.points for score in unit_scores(graded.root, NO_BWRAP_STUDENT).values())


# ---- 5. nbgrader and the standalone grader give the same points ----

@pytest.mark.parametrize("student", [*MAIN_STUDENTS, *CRAFTED_STUDENTS, *KERNEL_STUDENTS, UNSANDBOXED_STUDENT,
                                     *CORPUS_STUDENTS])
def test_nbgrader_points_equal_standalone_grader_points(graded, student):
    nbgrader_points = {unit: score.points for unit, score in unit_scores(graded.root, student).items()}
    assert nbgrader_points == graded.standalone[student]


def test_verdict_steps_fail_closed_when_misconfigured():
    """Without EngineVerdicts' result, or for a grade cell no unit owns, autograde stops with the fix; the kernel's
    own hook never passes a unit."""
    nb = read_notebook(notebook_at(REPO, "release"))
    with pytest.raises(RuntimeError, match="must list EngineVerdicts before"):
        ApplyEngineVerdicts().preprocess(nb, {})
    graded_blank = GradedSubmission(SubmissionResult("x", verdicts=[]), isolated=True, unisolated_because="")
    with pytest.raises(RuntimeError, match="'test_ex1_logprobs' has no verdict from the grader"):
        ApplyEngineVerdicts().preprocess(nb, {STATE_KEY: graded_blank})
    assert graded_outside.grade_unit("ex1_probs") is False


def test_isolation_is_required_unless_switched_off(monkeypatch):
    monkeypatch.delenv(NO_ISOLATION_VAR, raising=False)
    config = load_course_config()
    assert EngineVerdicts(config=config).isolation_choice() == ("required", "")
    config.EngineVerdicts.isolation = "off"
    assert EngineVerdicts(config=config).isolation_choice() == ("off", "EngineVerdicts.isolation = 'off'")
    monkeypatch.setenv(NO_ISOLATION_VAR, "1")
    assert EngineVerdicts(config=load_course_config()).isolation_choice() == ("off", f"{NO_ISOLATION_VAR}=1")


def test_config_points_kernels_at_the_kits_data(monkeypatch, names_file):
    # Run by hand, `nbgrader autograde` starts kernels in autograded/<student>/... with no names.txt beside them;
    # the config hands them the kit's verified copy (setup-data put it in data/), so they need no network.
    monkeypatch.delenv("BACKPROP_NINJA_NAMES", raising=False)
    load_course_config()
    assert os.environ["BACKPROP_NINJA_NAMES"] == str(REPO / "data" / "names.txt")


def test_an_untouched_release_logs_no_checksum_warning_and_a_changed_locked_cell_still_does(graded):
    """RestoreHiddenTests gives an untouched test cell its hidden tests back before OverwriteCells compares
    checksums: the honest students' run logs no "has changed" at all; x_tamper's emptied test cell is still
    reported (and restored: test_tampered_cells_are_restored_and_graded...)."""
    assert "has changed" not in graded.logs["honest"], graded.logs["honest"][-3000:]
    emptied = TEST_CELL_PREFIX + TAMPERED["emptied"]
    assert f"Attribute 'checksum' for cell {emptied} has changed" in graded.logs["crafted"], \
        graded.logs["crafted"][-3000:]
    changed = {line.split(" for cell ")[1].split(" ")[0] for line in graded.logs["crafted"].splitlines()
               if "has changed" in line}
    assert changed <= {TEST_CELL_PREFIX + unit for unit in TAMPERED.values()}, changed
