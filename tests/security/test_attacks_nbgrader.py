"""Attacks through `nbgrader autograde`: one real run on a throwaway course, five submissions.

alice hands in every answer right. Each attacker hands in the release with one attack in its first answer cell
(which nbgrader's kernel runs before any hidden test) and every other answer blank, so its honest score is 0:
- x_env points the hidden-test hook at alice's notebook (BACKPROP_NINJA_SUBMISSION);
- x_copy copies alice's notebook over the file nbgrader is executing;
- x_hidden puts a fake `backprop_ninja.hidden` whose grade_unit says True into sys.modules;
- x_forge, in the grader's worker, writes full marks to the grader's stdout through /proc and kills the grader;
  in the kernel, sets alice's scores to 0 in gradebook.db, and leaves a sleeper to do it again once nbgrader
  is done.

A second course (the `limits` fixture) attacks the kernel's limits, the feedback and nbgrader's own bookkeeping,
each with every answer right, so that what the attack costs is plain (issue 13):
- x_disk fills every folder its kernel can write (the kernel's only one is a tmpfs with a size);
- z_slow adds six cells sleeping 8 s each (the whole notebook has a time limit, not only each cell);
- x_html shows HTML, JavaScript, SVG, Markdown and a forged image, and adds Markdown and raw cells with scripts
  (the feedback shows them as text); y_html is the same notebook with stock nbgrader's feedback chain, the control;
- x_meta duplicates and relabels grade_ids and changes points and flags in its metadata (nbgrader reads the
  release's instead); r_meta is the same notebook with stock nbgrader's sanitising, the control.
"""
from __future__ import annotations

import copy
import errno
import json
import os
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_raw_cell

import security_attacks as attacks
import security_harness as h
from backprop_ninja import examples
from backprop_ninja.assign import ASSIGNMENT
from fixtures.correct_cells import CORRECT_CELLS
from backprop_ninja.grade import isolation
from backprop_ninja.nbgrader_plugins import NOTEBOOK_TIME_UP
from nbgrader_course import (TEST_CELL_PREFIX, add_cells_after, cell_after, cell_with_id, course_env, finish, hand_in,
                             make_course, notebook_at, read_notebook, start, start_nbgrader, stop, stream_text,
                             unit_scores)

pytestmark = pytest.mark.isolation  # proves the sandbox: needs bubblewrap

CLASSMATE = "alice"
ATTACKERS = ("x_env", "x_copy", "x_hidden", "x_forge")


@dataclass
class GradedCourse:
    run: h.Run
    scores: dict[str, dict[str, float] | str]   # student -> grade_id -> points, or why there are none
    leftovers: list[str]


def read_scores(root: Path, student: str) -> dict[str, float] | str:
    try:
        return {unit: score.points for unit, score in unit_scores(root, student).items()}
    except Exception as error:  # noqa: BLE001 - a student missing from the gradebook is a finding, not a crash
        return f"no scores in the gradebook ({type(error).__name__}: {error})"


@pytest.fixture(scope="module")
def course(workdir, names_file) -> GradedCourse:
    root = make_course(workdir / "course", names_file)
    # x_forge's worker half tests the sandbox, which the allowlist would hide by refusing the cell before it runs
    with (root / "nbgrader_config.py").open("a") as config:
        config.write('\nc.EngineVerdicts.code = "any"\n')
    release = read_notebook(notebook_at(root, "release"))
    alice = notebook_at(root, "submitted", CLASSMATE)
    first_cells = {
        "x_env": attacks.redirect_submission_cell(str(alice)),
        "x_copy": attacks.copy_classmate_cell(str(alice), str(notebook_at(root, "autograded", "x_copy"))),
        "x_hidden": attacks.FAKE_HIDDEN_MODULE,
        "x_forge": attacks.nbgrader_forge_cell(h.MARK, str(root / "gradebook.db"), CLASSMATE),
    }
    hand_in(root, CLASSMATE, examples.filled(release, CORRECT_CELLS))
    for student, code in first_cells.items():
        hand_in(root, student, examples.filled(release, {"ex1_logprobs": code}))

    env = h.grader_env(workdir / "tmp", names_file, **course_env(names_file))
    done, leftovers = h.watched([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force"], env,
                                cwd=root, timeout=600, sleepers=True)
    return GradedCourse(done, {s: read_scores(root, s) for s in (CLASSMATE, *ATTACKERS)}, leftovers)


def test_autograde_runs_to_its_end(course):
    assert course.run.returncode == 0, course.run.log


def test_the_classmate_keeps_full_marks(course):
    scores = course.scores[CLASSMATE]
    assert isinstance(scores, dict), scores
    lost = {unit: points for unit, points in scores.items() if points != h.UNIT_POINTS[unit]}
    assert set(scores) == set(h.UNIT_POINTS) and not lost, f"alice lost points: {lost}"


@pytest.mark.parametrize("student", ATTACKERS)
def test_the_attack_earns_nothing(course, student):
    scores = course.scores[student]
    assert isinstance(scores, dict), scores
    earned = {unit: points for unit, points in scores.items() if points}
    assert not earned, f"{student} earned {sum(earned.values()):g} points with blank answers: {sorted(earned)}"


def test_nothing_of_the_run_is_left_behind(course):
    h.assert_nothing_left(course.run, course.leftovers)


# ---- the kernel's limits, the feedback and the metadata ----

LIMITED = ("x_disk", "x_html", "x_meta", "x_threads", "y_html")  # one autograde run, our config: --student=[xy]_*
SLOW, META_CONTROL, HTML_CONTROL = "z_slow", "r_meta", "y_html"
NOTEBOOK_TIMEOUT, SLOW_CELL_TIMEOUT = "20", "60"  # six cells of 8 s each: the notebook's limit cuts, no cell's does
SLEEPERS = 6
DISK_MARKER, PWNED = "DISK ", "PWNED"
# Fills /tmp with 8 MiB files (at most 1 GiB), then tries to write anywhere else. No import statement and no
# definition: added cells' definitions are replayed by the grader, and this cell is for the kernel only.
FILL_DISK = """
_os, _json = __import__("os"), __import__("json")
_written, _error = 0, None
try:
    for _i in range(128):
        with open(f"/tmp/fill-{_i}", "wb") as _f:
            for _ in range(8):
                _f.write(b"x" * (1 << 20))
                _written += 1 << 20
except OSError as _e:
    _error = _e.errno
_elsewhere = {}
for _folder in ["/", "/sandbox", "/dev", "/dev/shm", "/usr", "/sandbox/site-packages", _os.path.expanduser("~/..")]:
    try:
        with open(_os.path.join(_folder, "planted"), "wb") as _f:
            _f.write(b"x")
        _elsewhere[_folder] = "written"
    except OSError as _e:
        _elsewhere[_folder] = _e.errno
print("DISK " + _json.dumps({"tmp": [_written, _error], "elsewhere": _elsewhere}))
"""
SHOW_HTML = """
_d = __import__("IPython.display", fromlist=["display"])
_d.display(_d.HTML("<script>document.title='HTML-PWNED'</script><b onmouseover=\\"alert('ATTR-PWNED')\\">hi</b>"))
_d.display(_d.Javascript("document.title='JS-PWNED'"))
_d.display({"image/svg+xml": "<svg xmlns='http://www.w3.org/2000/svg'><script>alert('SVG-PWNED')</script></svg>"},
           raw=True)
_d.display({"text/markdown": "[click](javascript:alert('MD-PWNED'))"}, raw=True)
_d.display({"image/png": "\\"><script>alert('PNG-PWNED')</script>", "text/plain": "a picture"}, raw=True)
_d.display({"image/png": "iVBORw0KGgo="}, metadata={"image/png": {"width": "1 onerror=alert(`WIDTH-PWNED`)"}}, raw=True)
_d.HTML("<script>alert('RESULT-PWNED')</script>")
"""
THREADS_MARKER = "THREADS "
# Starts threads that wait forever until no more can be made (or 20,000 of them), in the kernel only (no definition
# for the grader to replay). The kernels' user has a cap of its own, so the count stops below it, and the grading
# boxes' user, which shares nothing with it, still starts its workers.
THREAD_BOMB = """
_threading, _json = __import__("threading"), __import__("json")
_forever, _started, _error = _threading.Event(), 0, None
try:
    while _started < 20000:
        _threading.Thread(target=_forever.wait, daemon=True).start()
        _started += 1
except RuntimeError as _e:
    _error = str(_e)
print("THREADS " + _json.dumps({"started": _started, "error": _error}))
"""
MARKDOWN_ATTACK = "Notes <script>alert('MARKDOWN-PWNED')</script> [see](javascript:alert('LINK-PWNED'))"
RAW_ATTACK = "<script>alert('RAW-PWNED')</script>"
# grade_ids the metadata attack plays with
DUPLICATED, RELABELLED_TEST, RELABELLED_AS, HIDDEN_ANSWER = ("ex1_probs", "test_ex1_counts", "test_ex1_logprobs",
                                                             "ex1_counts_sum_inv")


@dataclass
class LimitsCourse:
    root: Path
    tmpdir: Path                        # TMPDIR of the autograde runs: where a kernel folder of the host's would be
    logs: dict[str, tuple[int, str]]    # run -> (exit code, log)
    standalone: dict[str, float]        # x_meta's points from the standalone grader


def disk_notebook(release) -> nbformat.NotebookNode:
    nb = examples.filled(release, CORRECT_CELLS)
    nb.cells.append(new_code_cell(FILL_DISK))
    return nb


def slow_notebook(release) -> nbformat.NotebookNode:
    """Six added cells of 8 s each, early in the notebook, before every answer."""
    nb = examples.filled(release, CORRECT_CELLS)
    add_cells_after(nb, "imports", [new_code_cell('__import__("time").sleep(8)') for _ in range(SLEEPERS)])
    return nb


def thread_bomb_notebook(release) -> nbformat.NotebookNode:
    """Every answer right, and a thread bomb early in the notebook, before every answer."""
    nb = examples.filled(release, CORRECT_CELLS)
    add_cells_after(nb, "imports", [new_code_cell(THREAD_BOMB)])
    return nb


def html_notebook(release) -> nbformat.NotebookNode:
    nb = examples.filled(release, CORRECT_CELLS)
    raw = new_raw_cell(RAW_ATTACK)
    raw.metadata["raw_mimetype"] = "text/html"
    nb.cells += [new_code_cell(SHOW_HTML), new_markdown_cell(MARKDOWN_ATTACK), raw]
    return nb


def meta_notebook(release) -> nbformat.NotebookNode:
    """Every answer right, then: a wrong answer claims DUPLICATED's grade_id too, with 100 points; a test cell
    claims another's grade_id with 50 points; an answer cell claims its own test cell's grade_id; a Markdown cell has
    grade metadata but no grade_id; a locked cell claims to be an unlocked answer, with its source changed."""
    nb = examples.filled(release, CORRECT_CELLS)
    var = DUPLICATED.removeprefix("ex1_")
    duplicate = new_code_cell(f"d{var} = torch.zeros_like({var})")  # a wrong answer
    duplicate.metadata["nbgrader"] = {**copy.deepcopy(cell_with_id(nb, DUPLICATED).metadata["nbgrader"]),
                                      "grade": True, "points": 100}
    add_cells_after(nb, DUPLICATED, [duplicate])
    cell_with_id(nb, RELABELLED_TEST).metadata["nbgrader"].update(grade_id=RELABELLED_AS, points=50)
    cell_with_id(nb, HIDDEN_ANSWER).metadata["nbgrader"].update(
        grade_id=TEST_CELL_PREFIX + HIDDEN_ANSWER, grade=True, points=30)
    ungraded = new_markdown_cell("my notes")
    ungraded.metadata["nbgrader"] = {"grade": True, "points": 5, "schema_version": 3}
    nb.cells.append(ungraded)
    model = cell_with_id(nb, "model")
    model.metadata["nbgrader"].update(locked=False, solution=True)
    model.source = model.source.replace("n_hidden = 64", "n_hidden = 65")
    return nb


def stock_options(setting: str, names: list[str]) -> list[str]:
    return [f"--{setting}={name}" for name in names]


STOCK_SANITIZING = stock_options("Autograde.sanitize_preprocessors", [
    f"nbgrader.preprocessors.{name}" for name in
    ("ClearOutput", "DeduplicateIds", "OverwriteKernelspec", "OverwriteCells", "CheckCellMetadata")])
STOCK_FEEDBACK = stock_options("GenerateFeedback.preprocessors", [
    "nbgrader.preprocessors.GetGrades", "nbgrader.preprocessors.ClearHiddenTests",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor"])
STANDALONE = """
import json, sys
from backprop_ninja.grade.engine import grade_notebook
print(json.dumps({v.unit: v.points for v in grade_notebook(sys.argv[1]).verdicts}))
"""


@pytest.fixture(scope="module")
def limits(workdir, names_file) -> LimitsCourse:
    root = make_course(workdir / "limits", names_file)
    release = read_notebook(notebook_at(root, "release"))
    meta = meta_notebook(release)
    for student, nb in {"x_disk": disk_notebook(release), "x_html": html_notebook(release), "x_meta": meta,
                        "x_threads": thread_bomb_notebook(release),
                        HTML_CONTROL: html_notebook(release), SLOW: slow_notebook(release),
                        META_CONTROL: meta}.items():
        hand_in(root, student, nb)
    tmpdir = workdir / "limits-tmp"
    tmpdir.mkdir()
    env = {**course_env(names_file), "TMPDIR": str(tmpdir)}
    autograde = ("autograde", ASSIGNMENT, "--force")
    runs = {
        "limited": start_nbgrader(root, env, *autograde, "--student=[xy]_*"),
        SLOW: start_nbgrader(root, {**env, "BACKPROP_NINJA_NOTEBOOK_TIMEOUT": NOTEBOOK_TIMEOUT,
                                    "BACKPROP_NINJA_CELL_TIMEOUT": SLOW_CELL_TIMEOUT}, *autograde, f"--student={SLOW}"),
        META_CONTROL: start_nbgrader(root, env, *autograde, f"--student={META_CONTROL}", *STOCK_SANITIZING),
    }
    standalone = start([sys.executable, "-c", STANDALONE, str(notebook_at(root, "submitted", "x_meta"))], root, env)
    started = [*runs.values(), standalone]
    try:
        logs = {}
        for name, run in runs.items():
            out, err = run.communicate()
            logs[name] = (run.returncode, out + err)
        feedback = {"x_html": start_nbgrader(root, env, "generate_feedback", ASSIGNMENT, "--force",
                                             "--student=x_html"),
                    HTML_CONTROL: start_nbgrader(root, env, "generate_feedback", ASSIGNMENT, "--force",
                                                 f"--student={HTML_CONTROL}", *STOCK_FEEDBACK)}
        started += feedback.values()
        for run in feedback.values():
            finish(run)
        points = json.loads(finish_output(standalone).strip().splitlines()[-1])
        return LimitsCourse(root, tmpdir, logs, points)
    finally:
        stop(started)


def finish_output(proc) -> str:
    out, err = proc.communicate()
    assert proc.returncode == 0, f"the standalone grader exited {proc.returncode}:\n{err[-3000:]}"
    return out


def autograded(course: LimitsCourse, student: str) -> nbformat.NotebookNode:
    return read_notebook(notebook_at(course.root, "autograded", student))


def full_marks(course: LimitsCourse, student: str) -> None:
    scores = unit_scores(course.root, student)
    assert {unit: s.points for unit, s in scores.items()} == h.UNIT_POINTS, f"{student} lost points"
    assert not any(s.needs_manual_grade for s in scores.values()), f"{student}: cells left for manual grading"


@pytest.mark.parametrize("run", ["limited", SLOW])
def test_autograde_of_the_limits_course_runs_to_its_end(limits, run):
    code, log = limits.logs[run]
    assert code == 0, log[-4000:]


def test_a_kernel_fills_only_its_own_size_capped_folder(limits):
    cell = autograded(limits, "x_disk").cells[-1]
    lines = [line for line in stream_text(cell, "stdout").splitlines() if line.startswith(DISK_MARKER)]
    assert len(lines) == 1, cell.outputs
    report = json.loads(lines[0][len(DISK_MARKER):])
    written, error = report["tmp"]
    assert error == errno.ENOSPC and written <= isolation.TMP_BYTES, report  # the tmpfs is full at its size
    assert "written" not in report["elsewhere"].values(), report
    # On the host, nothing of the kernel's is left in TMPDIR (where a folder of its own would have been).
    assert h.folder_bytes(limits.tmpdir) < 1 << 20
    full_marks(limits, "x_disk")


def test_the_whole_notebook_has_a_time_limit(limits):
    nb = autograded(limits, SLOW)
    cut = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
           and any(out.get("ename") == NOTEBOOK_TIME_UP for out in cell.outputs)]
    assert len(cut) == 1, "no cell, or more than one, says the notebook's time ran out"
    sleepers = [i for i, cell in enumerate(nb.cells) if cell.source == '__import__("time").sleep(8)']
    assert len(sleepers) == SLEEPERS and cut[0] < sleepers[-1], (cut, sleepers)
    unrun = [i for i, cell in enumerate(nb.cells[cut[0] + 1:], cut[0] + 1) if cell.cell_type == "code"
             and cell.outputs and not cell.metadata.get("nbgrader", {}).get("grade")]
    assert not unrun, f"cells after the cut were run: {unrun}"
    full_marks(limits, SLOW)  # the grader decided the points before the kernel started


class LiveMarkup(HTMLParser):
    """What a browser would run or follow in a page: script bodies, on* attributes, javascript: links."""

    def __init__(self):
        super().__init__()
        self.live, self.in_script = [], False

    def handle_starttag(self, tag, attrs):
        self.in_script = tag == "script"
        for name, value in attrs:
            if name.startswith("on") or (value or "").strip().lower().startswith("javascript:"):
                self.live.append(f"{tag} {name}={value}")

    def handle_endtag(self, tag):
        self.in_script = False

    def handle_data(self, data):
        if self.in_script:
            self.live.append(data)


def live_attacks(course: LimitsCourse, student: str) -> tuple[list[str], str]:
    page = (course.root / "feedback" / student / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    parser = LiveMarkup()
    parser.feed(page)
    return sorted({piece for piece in parser.live if PWNED in piece}), page


def test_feedback_shows_student_html_and_scripts_as_text(limits):
    live, page = live_attacks(limits, "x_html")
    assert not live, f"the feedback runs or links the student's code: {live}"
    # ... but shows all of it as text (the added cells' sources hold the markers, the outputs only these labels)
    for mime in ("text/html", "application/javascript", "image/svg+xml", "text/markdown"):
        assert f"[{mime} output, shown as text]" in page, f"the {mime} output is not shown as text"
    for shown in ("MARKDOWN-PWNED", "RAW-PWNED"):
        assert shown in page, f"{shown} is not even shown as text"
    # The control: stock nbgrader's feedback of the same notebook runs these (nbconvert itself already escapes the
    # forged image and shows SVG and raw HTML cells safely; here they are text all the same).
    control, _ = live_attacks(limits, HTML_CONTROL)
    for attack in ("HTML-PWNED", "ATTR-PWNED", "JS-PWNED", "MD-PWNED", "WIDTH-PWNED", "RESULT-PWNED",
                   "MARKDOWN-PWNED", "LINK-PWNED"):
        assert any(attack in piece for piece in control), f"the control does not run {attack}: {control}"
    full_marks(limits, "x_html")


def test_tampered_metadata_costs_the_tamperer_only(limits):
    # The control: stock nbgrader stops on the same notebook, and records no score for it.
    code, log = limits.logs[META_CONTROL]
    assert code != 0 and "KeyError" in log, log[-3000:]
    scores = unit_scores(limits.root, "x_meta")
    assert {unit: s.max_points for unit, s in scores.items()} == h.UNIT_POINTS  # the release's points, not 100 or 50
    assert not any(s.needs_manual_grade for s in scores.values())
    assert {unit: s.points for unit, s in scores.items()} == limits.standalone  # what the grader gives the cells
    assert scores[DUPLICATED].points == 0 and scores[HIDDEN_ANSWER].points == 0  # the tampered cells earn nothing
    nb = autograded(limits, "x_meta")
    graded = [cell.metadata["nbgrader"]["grade_id"] for cell in nb.cells
              if cell.metadata.get("nbgrader", {}).get("grade")]
    assert sorted(graded) == sorted(TEST_CELL_PREFIX + unit for unit in h.UNIT_POINTS)
    assert "n_hidden = 64" in cell_with_id(nb, "model").source  # the locked cell is the release's again


def test_a_kernel_thread_bomb_is_capped_and_costs_nobody_points(limits):
    """The kernels run as a user of their own with a task cap (sandboxed/kernel.py): the bomb stops below the cap
    as root, every student of the same run keeps the grader's points, and the run ends."""
    from backprop_ninja.sandboxed.kernel import KERNEL_TASKS

    nb = autograded(limits, "x_threads")
    bomb = cell_after(nb, "imports")
    lines = [line for line in stream_text(bomb, "stdout").splitlines() if line.startswith(THREADS_MARKER)]
    assert len(lines) == 1, bomb.outputs
    report = json.loads(lines[0][len(THREADS_MARKER):])
    if os.geteuid() == 0:
        assert report["started"] < KERNEL_TASKS and report["error"], report
    for student in ("x_threads", "x_disk"):
        full_marks(limits, student)
