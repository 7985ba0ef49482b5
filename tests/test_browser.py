"""The student's view in a real browser: JupyterLab from this venv, headless Debian Chromium driven by playwright.

A private JupyterLab serves a temporary folder holding names.txt and copies of the release (release/ is never
touched):
  * partial.ipynb: dlogprobs, dprobs and dcounts_sum_inv answered right, dcounts_sum with its sign flipped, written
    in with nbformat before the notebook is opened; after the dcounts_sum answer, four new cells:
    hint("counts_sum") three times and progress(). Run All from the Run menu runs them and stops at the failing
    check.
  * solved.ipynb: every answer filled in from the solutions; Run All trains Exercise 4 for STEPS steps
    (BACKPROP_NINJA_STEPS in the server's environment, read by the notebook's max_steps cell).
  * blank.ipynb: the release as is, for nbgrader's Validate.
  * validate_<case>.ipynb: Exercise 1 only, half done (with a wrong answer others build on), an answer cell that
    raises, and complete; Validate's button must fail exactly the units the grader does not give full points.
Each test reads the rendered DOM. A failing step saves a full-page screenshot under out/browser-screenshots/ and
names it in the failure message.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from backprop_ninja import assign, units
from backprop_ninja.assign import REPO, notebook_path
from backprop_ninja.examples import filled
from backprop_ninja.grade import grade_notebook
from browser import CHROMIUM_ARGS, STDERR, Lab, Notebook, Screenshots, chromium_path, nbgrader_validate, remove


RIGHT = ["ex1_logprobs", "ex1_probs", "ex1_counts_sum_inv"]
WRONG = "ex1_counts_sum"
HINTS = ['hint("counts_sum")'] * 3
STEPS = 50
SHOTS = REPO / "out" / "browser-screenshots"


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def index_of(nb, gid: str) -> int:
    return next(i for i, cell in enumerate(nb.cells) if grade_id(cell) == gid)


def sign_flipped(answer: str) -> str:
    """The reference dcounts_sum with its sign flipped: `(-counts_sum**-2) * ...` becomes `(counts_sum**-2) * ...`."""
    flipped = answer.replace("(-counts_sum**-2)", "(counts_sum**-2)")
    assert flipped != answer, f"the reference dcounts_sum changed shape; update sign_flipped(): {answer!r}"
    return flipped


def answer_lines(code: str) -> list[str]:
    """The code lines of a reference answer, without nbgrader's solution markers."""
    return [line for line in code.splitlines() if line.strip() and not line.strip().startswith("###")]


@pytest.fixture(scope="module")
def course(names_file, solutions):
    """The student's folder with the three notebooks, and where the cells the tests read are."""
    release = nbformat.read(notebook_path(REPO, "release"), as_version=4)
    work = Path(tempfile.mkdtemp(prefix="backprop_ninja_browser_"))
    root, home = work / "student", work / "jupyter"
    root.mkdir()
    home.mkdir()
    shutil.copy(names_file, root / "names.txt")

    partial = filled(release, {**{gid: solutions[gid] for gid in RIGHT}, WRONG: sign_flipped(solutions[WRONG])})
    after_answer = index_of(partial, WRONG) + 1
    # the last: a student who draws another batch on purpose (Run All stops before it, at the failing check)
    another_batch = "batch_state = torch.Generator().manual_seed(5).get_state()"
    partial.cells[after_answer:after_answer] = [nbformat.v4.new_code_cell(src)
                                                for src in [*HINTS, "progress()", another_batch]]
    nbformat.write(partial, root / "partial.ipynb")
    solved = filled(release, solutions)
    nbformat.write(solved, root / "solved.ipynb")
    shutil.copy(notebook_path(REPO, "release"), root / "blank.ipynb")

    yield {
        "root": root, "home": home,
        "partial_cells": len(partial.cells), "solved_cells": len(solved.cells), "blank_cells": len(release.cells),
        "grade_cells": [normalised(cell.source) for cell in release.cells
                        if cell.metadata.get("nbgrader", {}).get("grade")],
        "checks": {gid: index_of(partial, "test_" + gid) for gid in RIGHT},
        "wrong_check": index_of(partial, "test_" + WRONG),
        "hints": [after_answer + k for k in range(len(HINTS))],
        "progress": after_answer + len(HINTS), "another_batch": after_answer + len(HINTS) + 1,
        "next_answer": index_of(partial, "ex1_counts"), "forward": index_of(partial, "forward"),
        "train": index_of(solved, "train"), "eval": index_of(solved, "eval"),
    }
    remove(work)


@pytest.fixture(scope="module")
def lab(course):
    solutions_notebook = notebook_path(REPO, "solutions")
    server = Lab(course["root"], course["home"], {"BACKPROP_NINJA_STEPS": str(STEPS),
                                                  "BACKPROP_NINJA_SOLUTIONS": str(solutions_notebook)})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shots(request):
    """The screenshot folder, emptied first; removed again when every test of this module passed."""
    remove(SHOTS)
    failed_before = request.session.testsfailed
    yield Screenshots(SHOTS)
    if request.session.testsfailed == failed_before:
        remove(SHOTS)


@pytest.fixture(scope="module")
def browser():
    executable = chromium_path()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_notebook(browser, lab, shots, name: str, cells: int) -> Notebook:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    notebook = Notebook(page, shots, name.removesuffix(".ipynb"))
    notebook.open(lab.notebook_url(name), cells)
    return notebook


@pytest.fixture(scope="module")
def partial(course, lab, browser, shots):
    """partial.ipynb after Run All: it stops at the failing check of dcounts_sum."""
    notebook = open_notebook(browser, lab, shots, "partial.ipynb", course["partial_cells"])
    notebook.run_all()
    notebook.wait_for(course["wrong_check"], STDERR, "the failure of check('counts_sum')", timeout_s=120)
    notebook.wait_until_finished(timeout_s=60)
    yield notebook
    notebook.page.close()


def test_checks_print_their_lines(partial, course):
    for gid, index in course["checks"].items():
        var = "d" + gid.removeprefix("ex1_")
        text = partial.output_text(index)
        if not any(line.split("|")[0].strip() == var and "approximate: True" in line for line in text.splitlines()):
            partial.fail("check_line", f"check of {var} (cell {index}) shows no line '{var} | ... approximate: True':"
                                       f" {text!r}", index)
    text = partial.output_text(course["wrong_check"])
    if not any(line.split("|")[0].strip() == "dcounts_sum" and "approximate: False" in line
               for line in text.splitlines()):
        partial.fail("check_line", f"the failing check prints no 'dcounts_sum | ... approximate: False' line: {text!r}",
                     course["wrong_check"])


def test_wrong_answer_gets_a_one_line_diagnosis(partial, course):
    index = course["wrong_check"]
    error = partial.error_text(index)
    if not error.startswith("CheckFailed:") or "\n" in error or "dcounts_sum" not in error:
        partial.fail("diagnosis", f"the failing check does not show one line 'CheckFailed: ... dcounts_sum ...': "
                                  f"{error!r}", index)
    if "Traceback" in partial.output_text(index):
        partial.fail("diagnosis", "the failing check shows a traceback", index)
    if not re.search(r"\bsign\b", error, re.IGNORECASE):
        partial.fail("diagnosis", f"the message for a sign flip does not name the sign: {error!r}", index)
    # Run All stopped at the failing check: the next answer cell never ran
    if partial.outputs(course["next_answer"]).count():
        partial.fail("diagnosis", "Run All went on after the failing check", course["next_answer"])


def test_three_hints_give_three_levels(partial, course, solutions):
    hints = [partial.output_text(index) for index in course["hints"]]
    for level, (index, text) in enumerate(zip(course["hints"], hints), 1):
        if not text.startswith(f"Hint {level} of 3 for dcounts_sum"):
            partial.fail("hints", f"call {level} of hint('counts_sum') does not give hint {level}: {text[:300]!r}",
                         index)
    if len(set(hints)) != 3:
        partial.fail("hints", "the three hints are not three different texts", course["hints"][0])
    # level 1 names the line that uses counts_sum; level 3 shows the answer from BACKPROP_NINJA_SOLUTIONS
    if "counts_sum_inv = counts_sum**-1" not in hints[0]:
        partial.fail("hints", f"hint 1 does not show the line that uses counts_sum: {hints[0]!r}", course["hints"][0])
    answer = answer_lines(solutions[WRONG])
    if "From the solutions notebook" not in hints[2] or not all(line in hints[2] for line in answer):
        partial.fail("hints", f"hint 3 does not show the answer {answer} from the solutions notebook: {hints[2]!r}",
                     course["hints"][2])


def test_progress_shows_the_picture(partial, course):
    index = course["progress"]
    text = partial.output_text(index)
    statuses = {line.split()[1]: line.split()[0] for line in text.splitlines() if line.split()[1:2]}
    expected = {"dlogprobs": "done", "dprobs": "done", "dcounts_sum_inv": "done", "dcounts_sum": "wrong"}
    if any(statuses.get(var) != status for var, status in expected.items()):
        partial.fail("progress", f"progress() does not list {expected}: {text[:600]!r}", index)
    image = partial.cell(index).locator(".jp-OutputArea-output img").first
    if not image.count() or not (image.get_attribute("src") or "").startswith("data:image/png"):
        partial.fail("progress", "progress() shows no picture (an <img> in its output)", index)
    box = image.bounding_box()
    if not box or box["width"] < 200 or box["height"] < 200:
        partial.fail("progress", f"the progress picture is not drawn at a visible size: {box}", index)


def test_a_stale_answer_says_to_rerun_its_cells(partial, course):
    # Runs last of the tests on partial.ipynb: it changes the output of dprobs's check, which the others read.
    partial.run_cell(course["another_batch"])  # a student draws another batch, re-runs the forward pass,
    partial.run_cell(course["forward"])  # and then only the check of dprobs
    check = course["checks"]["ex1_probs"]
    partial.run_cell(check)
    partial.wait_for(check, STDERR, "the check's failure", timeout_s=60)
    error = partial.error_text(check)
    if error != ("CheckFailed: dprobs was computed from an earlier forward pass: re-run the cells from dlogprobs's "
                 "on."):
        partial.fail("stale", f"the check of a stale dprobs does not say to re-run the cells from dlogprobs's: "
                              f"{error!r}", check)


def test_training_shows_progress_bar_and_loss_plot(course, lab, browser, shots):
    notebook = open_notebook(browser, lab, shots, "solved.ipynb", course["solved_cells"])
    train, evaluate = course["train"], course["eval"]
    notebook.run_all()
    notebook.wait_for(train, "img", "the loss plot", timeout_s=150)
    notebook.wait_for(evaluate, "pre", "the evaluation", timeout_s=90)
    notebook.wait_until_finished(timeout_s=60)

    output = notebook.cell(train).locator(".jp-OutputArea")
    # tqdm.auto (the notebook imports it when ipywidgets is there, as in this venv) draws an ipywidgets
    # FloatProgress, labelled "50/50 [...]"; without the widget JupyterLab would show its text repr instead
    bar = output.locator(".widget-hprogress .progress-bar")
    label = output.inner_text().replace("\u2007", " ")
    if not bar.count() or f"{STEPS}/{STEPS}" not in label:
        notebook.fail("progress_bar", f"no tqdm progress bar (an ipywidgets progress widget) reading "
                                      f"{STEPS}/{STEPS}: {label[:500]!r}", train)
    filled_share = bar.first.evaluate(
        "bar => bar.getBoundingClientRect().width / bar.parentElement.getBoundingClientRect().width")
    if filled_share < 0.99:
        notebook.fail("progress_bar", f"the progress bar is only {filled_share:.0%} full after the run", train)
    plot = output.locator("img").first
    box = plot.bounding_box()
    if not (plot.get_attribute("src") or "").startswith("data:image/png") or not box or box["height"] < 150:
        notebook.fail("loss_plot", f"the loss plot is not drawn (img box {box})", train)
    if "val loss" not in notebook.output_text(evaluate):
        notebook.fail("evaluation", f"the notebook did not run to the end: {notebook.output_text(evaluate)!r}",
                      evaluate)
    notebook.page.close()


def normalised(source: str) -> str:
    return "\n".join(line.strip() for line in source.splitlines() if line.strip())


def opening(source: str) -> str:
    """The start of a cell's first line: `nbgrader validate` cuts long lines short with "..."."""
    return normalised(source).split("\n")[0][:60]


def cli_failed_cells(output: str) -> list[str]:
    """The openings of the cells `nbgrader validate` lists as failed (each block: the marker line, the indented
    source, then "The error was:")."""
    blocks = output.split("The following cell failed:")[1:]
    return [opening(block.split("The error was:")[0]) for block in blocks]


def click_validate(notebook: Notebook, what: str):
    """Click Validate; (the dialog's message, the sources of the cells it lists as failed, their error boxes)."""
    notebook.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .validate-button").first.click()
    message = notebook.page.locator(".jp-Dialog #validation-message")
    try:
        message.wait_for(timeout=150_000)
    except PlaywrightTimeout:
        notebook.fail("validate", f"the Validate button showed no result for {what} within 150 s")
    boxes = message.locator(".jp-RenderedText pre").all()
    return message, [normalised(pre.inner_text()) for pre in boxes[::2]], boxes[1::2]


def cut_at_the_edge(errors) -> list[str]:
    """The error boxes wider than the dialog: its boxes do not wrap, so such a line is cut off at its edge."""
    return [pre.inner_text()[:120] for pre in errors
            if pre.evaluate("e => e.scrollWidth > e.closest('.jp-Dialog-body').clientWidth + 1")]


def test_validate_button_fails_the_blank_notebook(course, lab, browser, shots):
    notebook = open_notebook(browser, lab, shots, "blank.ipynb", course["blank_cells"])
    message, failed, errors = click_validate(notebook, "the blank notebook")
    text = message.inner_text()
    if "validation-failed" not in (message.get_attribute("class") or "") or "Success" in text:
        notebook.fail("validate", f"Validate does not report the blank notebook as failing: {text[:800]!r}")
    if sorted(failed) != sorted(course["grade_cells"]):
        notebook.fail("validate", f"Validate lists {len(failed)} failed cells, not the {len(course['grade_cells'])} "
                                  f"test cells of the release: {failed}")
    if "dlogprobs is not defined yet" not in " ".join(text.split()):
        notebook.fail("validate", f"Validate does not say what is missing in the first unit: {text[:800]!r}")
    cut = cut_at_the_edge(errors)
    if cut:
        notebook.fail("validate", f"Validate's dialog cuts {len(cut)} messages off at its edge, e.g. {cut[0]!r}")
    notebook.page.close()


def test_validate_command_fails_the_blank_notebook(course, lab):
    # nbgrader validate always exits 0 (nbgrader #1908): the verdict is in its output
    output = nbgrader_validate(course["root"] / "blank.ipynb", lab.env)
    assert "Success" not in output, f"Validate passes the blank notebook:\n{output[-2000:]}"
    assert f"VALIDATION FAILED ON {len(course['grade_cells'])} CELL(S)" in output, \
        f"Validate does not report every test cell as failing:\n{output[:2000]}"
    assert sorted(cli_failed_cells(output)) == sorted(opening(cell) for cell in course["grade_cells"]), \
        f"Validate does not name the release's test cells as the failing ones:\n{output[:3000]}"
    assert "CheckFailed: dlogprobs is not defined yet" in output, \
        f"Validate does not say what is missing in the first unit:\n{output[:2000]}"


# --- Validate is the grader's verdict: the cells it fails are exactly the units the grader does not give full points

def _unit_of_check(opening_line: str) -> str | None:
    """The grade_id a test cell's first line checks: check("probs") -> ex1_probs, check("ex2") -> ex2_logits."""
    if opening_line.startswith("check_backward()"):
        return "ex4_backward"
    found = re.match(r'check\("(\w+)"\)', opening_line)
    if not found:
        return None
    return {"ex2": "ex2_logits", "ex3": "ex3_hprebn"}.get(found.group(1), f"ex1_{found.group(1)}")


def _validate_cases(solutions) -> dict[str, dict[str, str]]:
    ex1 = [u.grade_id for u in units.EXERCISE_1]
    half = {gid: solutions[gid] for gid in ex1[:13]}
    half[WRONG] = sign_flipped(solutions[WRONG])  # dcounts, dnorm_logits, ... build on it: right from right inputs
    raising = {gid: solutions[gid] for gid in ex1}
    raising["ex1_h"] = "dh = dlogits @ W2"  # a shape error; dhpreact's right cell then raises NameError
    return {"exercise_1_only": {gid: solutions[gid] for gid in ex1}, "half_done": half, "raising": raising,
            "complete": dict(solutions)}


@pytest.mark.parametrize("case", ["exercise_1_only", "half_done", "raising", "complete"])
def test_validate_fails_exactly_the_units_the_grader_does_not_give_full_points(course, lab, browser, shots,
                                                                               solutions, case):
    """The Validate button, in JupyterLab, on four notebooks a student would validate: the cells it fails are
    exactly the units the grader does not give full points, each with a short message the dialog shows whole."""
    release = nbformat.read(notebook_path(REPO, "release"), as_version=4)
    path = course["root"] / f"validate_{case}.ipynb"
    nbformat.write(filled(release, _validate_cases(solutions)[case]), path)
    short = {v.unit for v in grade_notebook(path).verdicts if v.points < v.max_points}

    notebook = open_notebook(browser, lab, shots, path.name, len(release.cells))
    message, failed_cells, errors = click_validate(notebook, f"the {case} notebook")
    text = message.inner_text()
    failed = {_unit_of_check(source.split("\n")[0]) for source in failed_cells}
    if failed != short:
        notebook.fail("validate", f"Validate fails {sorted(failed - short)} that the grader gives full points, and "
                                  f"passes {sorted(short - failed)} that it does not: {text[:3000]!r}")
    if ("Success" in text) != (not short):
        notebook.fail("validate", f"Validate's verdict on the whole notebook is not the grader's: {text[:800]!r}")
    for pre in errors:  # each failure is one short line, which the dialog shows whole
        error = " ".join(pre.inner_text().split())
        if not error.startswith("CheckFailed") or len(error) > 400:
            notebook.fail("validate", f"a failure is not one short CheckFailed line: {error[:600]!r}")
    cut = cut_at_the_edge(errors)
    if cut:
        notebook.fail("validate", f"Validate's dialog cuts {len(cut)} messages off at its edge, e.g. {cut[0]!r}")
    notebook.page.close()


# --- the notebook opens on the work: machinery collapsed, Exercise 1's first answer cell within two screens -------

def test_the_release_opens_on_the_exercise(course, lab, browser, shots):
    notebook = open_notebook(browser, lab, shots, "blank.ipynb", course["blank_cells"])
    release = nbformat.read(notebook_path(REPO, "release"), as_version=4)
    first_answer = index_of(release, "ex1_logprobs")
    top = notebook.cell(0).bounding_box()["y"]
    screen = notebook.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-WindowedPanel-outer").first \
        .bounding_box()["height"]
    answer = notebook.cell(first_answer).bounding_box()
    print(f"first answer cell at {answer['y'] - top:.0f} px of a {screen:.0f} px screen")
    if answer["y"] + answer["height"] - top > 2 * screen:
        notebook.fail("opening", f"Exercise 1's first answer cell ends {answer['y'] + answer['height'] - top:.0f} px "
                                 f"down, beyond the first two screens ({2 * screen:.0f} px)", first_answer)
    placeholders = notebook.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-InputPlaceholder").count()
    if placeholders < len(assign.HIDDEN_CELLS):
        notebook.fail("opening", f"{placeholders} cells show collapsed; {len(assign.HIDDEN_CELLS)} should")
    notebook.page.close()
