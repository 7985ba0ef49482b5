"""The assignment itself: one text source, and the notebooks nbgrader makes from it.

Builds a fresh copy of the course in a temporary folder once (source -> release -> solutions, about 40 s) and
compares it with what is committed.
"""
from __future__ import annotations

import re
import shutil

import jupytext
import nbformat
import pytest
import torch

from backprop_ninja import assign, model, units
from notebooks import VALIDATE_WIDTH

ROOT = assign.REPO


def _cells(path):
    return nbformat.read(path, as_version=4).cells


def _grade_id(cell):
    return cell.metadata.get("nbgrader", {}).get("grade_id")


@pytest.fixture(scope="module")
def fresh_build(tmp_path_factory, names_file):
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(ROOT / "source", root / "source", ignore=shutil.ignore_patterns("*.ipynb", "names.txt"))
    shutil.copy(ROOT / "nbgrader_config.py", root)
    assign.build(root, names_path=str(names_file))
    return root


def test_committed_source_and_release_match_a_fresh_build(fresh_build):
    # nothing is ignored here: the build is deterministic down to nbgrader's cell checksums
    for folder in ("source", "release"):
        committed = assign.notebook_path(ROOT, folder).read_text()
        fresh = assign.notebook_path(fresh_build, folder).read_text()
        assert committed == fresh, f"{folder}/ is out of date: run `backprop-ninja assign` and commit the result"


def test_committed_solutions_match_a_fresh_build(fresh_build):
    # Compared: cell types, sources and nbgrader metadata. Not compared: outputs and execution counts. The build
    # already strips what changes between runs (timestamps, progress bars, widget ids) and is byte-identical when
    # rebuilt on the same machine, but printed numbers such as `maxdiff` depend on the CPU's float kernels.
    def essentials(path):
        return [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in _cells(path)]

    assert essentials(assign.notebook_path(ROOT, "solutions")) == essentials(
        assign.notebook_path(fresh_build, "solutions")), "solutions/ is out of date: run `backprop-ninja assign`"


def test_solutions_were_executed_without_errors():
    cells = _cells(assign.notebook_path(ROOT, "solutions"))
    errors = [(_grade_id(c), o.get("ename")) for c in cells if c.cell_type == "code"
              for o in c.outputs if o.output_type == "error"]
    assert errors == []
    assert any(o.get("text", "").startswith("train loss") for c in cells if c.cell_type == "code" for o in c.outputs)


def _solution_lines():
    """Every line of solution code that is specific to an answer: long enough, and not also in a given cell."""
    nb = jupytext.read(assign.text_source(ROOT), fmt="py:percent")
    given = {line.strip() for c in nb.cells if not c.metadata.get("nbgrader", {}).get("solution")
             for line in c.source.splitlines()}
    lines = set()
    for code in assign.solution_cells(ROOT).values():
        for line in code.splitlines():
            line = line.strip()
            if len(line) >= 12 and line not in given and not line.startswith(("def ", '"""', "#")):
                lines.add(line)
    return lines


@pytest.mark.parametrize("folder", ["release"])
def test_release_holds_no_solution_and_no_hidden_test(folder):
    text = "\n".join(c.source for c in _cells(assign.notebook_path(ROOT, folder)))
    solution_lines = _solution_lines()
    assert len(solution_lines) > 40  # the check below means something only if there is much to look for
    leaked = [line for line in solution_lines if line in text]
    assert leaked == []
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "grade_unit", "backprop_ninja.hidden"):
        assert marker not in text
    files = sorted(p.name for p in (ROOT / folder / assign.ASSIGNMENT).iterdir())
    assert files == [f"{assign.ASSIGNMENT}.ipynb"]  # the text source (with solutions) is never copied


def test_solutions_hold_no_hidden_test():
    text = assign.notebook_path(ROOT, "solutions").read_text()
    for marker in ("HIDDEN TESTS", "grade_unit", "backprop_ninja.hidden"):
        assert marker not in text


def test_every_unit_appears_exactly_once_in_release():
    ids = [_grade_id(c) for c in _cells(assign.notebook_path(ROOT, "release"))]
    for unit in units.UNITS:
        assert ids.count(unit.grade_id) == 1, unit.grade_id
        assert ids.count(unit.test_id) == 1, unit.test_id
    assert len(ids) == len(set(ids))


def test_source_follows_the_unit_table():
    """The notebook's answer and test cells are exactly the table's units, in order, with the table's points."""
    nb = jupytext.read(assign.text_source(ROOT), fmt="py:percent")
    answers, tests = [], []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            answers.append(meta["grade_id"])
        if meta.get("grade"):
            tests.append((meta["grade_id"], meta["points"]))
            hidden = re.search(r"### BEGIN HIDDEN TESTS\n(.*)\n### END HIDDEN TESTS", cell.source, re.S)
            assert hidden and f'grade_unit("{meta["grade_id"][len("test_"):]}")' in hidden.group(1)
    assert answers == [u.grade_id for u in units.UNITS]
    assert tests == [(u.test_id, u.points) for u in units.UNITS]
    helpers = next(c.source for c in nb.cells if _grade_id(c) == "helpers")
    listed = re.search(r"EX1_VARIABLES = \[(.*?)\]", helpers, re.S).group(1)
    assert re.findall(r'"(\w+)"', listed) == [u.var for u in units.EXERCISE_1]


def test_notebook_forward_pass_is_the_graders(names_file):
    """The notebook's set-up cells build exactly the batch and loss the grader replays as 'the notebook's own'."""
    nb = nbformat.read(assign.notebook_path(ROOT, "source"), as_version=4)  # the diagnoses cell filled in
    namespace = {}
    for cell in nb.cells:  # the forward cell ends with autograd_reference(), from the helpers cell
        if _grade_id(cell) in ("imports", "data", "vocab", "helpers", "diagnoses", "model", "forward"):
            code = cell.source.replace('fetch_names()', f'fetch_names({str(names_file)!r})')
            exec(compile(code, _grade_id(cell), "exec"), namespace)
    X, Y = model.build_dataset(model.split_words(names_file.read_text().splitlines())[0])
    replay = model.make_replay(X, Y, model.NOTEBOOK_SEED, model.BATCH_SIZE)
    assert torch.equal(namespace["Xb"], replay.values["Xb"])
    for name in model.INTERMEDIATES + ("loss",):
        assert torch.equal(namespace[name].detach(), replay.values[name]), name
    for name in units.BY_ID:
        var = units.BY_ID[name].var
        if var and units.BY_ID[name].exercise == 1:
            assert torch.allclose(namespace[var].grad.double(), replay.grads[var], rtol=1e-4, atol=1e-7), var


# ---- nbgrader's Validate button tells the truth ----

def _validate(notebook: nbformat.NotebookNode, folder, monkeypatch, names_file) -> list[dict]:
    """The cells nbgrader's Validate reports as failed (its CLI always exits 0, so ask the Validator itself)."""
    from nbgrader.validator import Validator

    monkeypatch.setenv("BACKPROP_NINJA_NAMES", str(names_file))
    monkeypatch.delenv("BACKPROP_NINJA_STEPS", raising=False)  # Validate must pick its short schedule by itself
    path = folder / f"{assign.ASSIGNMENT}.ipynb"
    nbformat.write(notebook, path)
    results = Validator().validate(str(path))
    assert set(results) <= {"failed"}, results  # nothing else (changed or retyped cells) to report
    return results.get("failed", [])


def _failed_ids(failed, release) -> list[str]:
    """The grade_ids of the failed test cells. Validate names a cell by its source only, so match them in notebook
    order (every test cell is different today: Exercise 2's and 3's call check("ex2") and check("ex3"), not
    Exercise 1's check("logits") and check("hprebn"); the order keeps the match right if two are ever alike)."""
    tests = [(c.source.strip(), _grade_id(c)) for c in release.cells if c.metadata.get("nbgrader", {}).get("grade")]
    ids, index = [], 0
    for cell in failed:
        while tests[index][0] != cell["source"]:
            index += 1
        ids.append(tests[index][1])
        index += 1
    return ids


def test_validate_fails_the_blank_release_naming_each_gradient(release, tmp_path, monkeypatch, names_file):
    failed = _validate(release, tmp_path, monkeypatch, names_file)
    assert _failed_ids(failed, release) == [u.test_id for u in units.UNITS]  # every test cell, nothing else
    errors = [f["raw_error"] for f in failed]
    for unit, raw in zip(units.UNITS, errors):
        # the message alone, no traceback, in lines Validate's dialog shows whole
        assert all(len(line) <= VALIDATE_WIDTH for line in raw.strip().splitlines()), raw
        error = " ".join(raw.split())
        assert error.startswith("CheckFailed: ") and "Traceback" not in error, error
        if unit.var:
            assert error.startswith(f"CheckFailed: d{unit.var} is not defined yet"), error
    assert " ".join(errors[-1].split()).startswith(
        "CheckFailed: manual_backward raised NotImplementedError: answer its cell above")


def test_validate_fails_a_wrong_notebook_naming_what_is_wrong(release, tmp_path, monkeypatch, names_file):
    from backprop_ninja import examples

    ben = nbformat.read(ROOT / "examples" / "submitted" / "ben" / assign.ASSIGNMENT / f"{assign.ASSIGNMENT}.ipynb",
                        as_version=4)
    failed = _validate(ben, tmp_path, monkeypatch, names_file)
    ids = _failed_ids(failed, release)
    for unit in examples.EXPECTED_LOST:  # each of ben's mistakes fails its own check
        assert f"test_{unit}" in ids, unit
    assert "test_ex4_backward" not in ids  # his manual_backward is right
    text = " ".join("\n".join(f["raw_error"] for f in failed).split())  # the messages come wrapped under nbgrader
    # each names the mistake as the grader does (diagnose.py, in the notebook's diagnoses cell)
    assert "CheckFailed: dlogprobs is off: the sign is flipped." in text
    # (ben's earlier mistakes reach dhpreact in his notebook, so the values are off too, and the message says so)
    assert ("CheckFailed: dbnbias is off: shape (64,) instead of (1, 64): keep the summed dimension (keepdim=True)"
            in text)
    assert "CheckFailed: dC is autograd's own answer (C.grad); derive it by hand." in text
    assert "Traceback" not in text


def test_validate_passes_the_release_filled_with_the_solutions(release, solutions, tmp_path, monkeypatch,
                                                             names_file):
    from backprop_ninja import examples

    assert _validate(examples.filled(release, solutions), tmp_path, monkeypatch, names_file) == []


def test_the_tutor_cell_comes_from_the_table_and_the_switch_leaves_the_hints_out(tmp_path):
    from backprop_ninja import tutor

    (tmp_path / "source").mkdir()
    (tmp_path / "source" / f"{assign.ASSIGNMENT}.py").write_text(assign.text_source(ROOT).read_text())
    (tmp_path / "source" / assign.ASSIGNMENT).mkdir()
    cells = {}
    for with_hints in (True, False):
        nb = nbformat.read(assign.build_source_notebook(tmp_path, with_hints=with_hints), as_version=4)
        cells[with_hints] = next(cell.source for cell in nb.cells if cell.get("id") == assign.TUTOR_CELL)
        title = f"# @title {assign.HIDDEN_CELLS[assign.TUTOR_CELL]}\n"  # shown collapsed, under this title
        assert cells[with_hints] == title + tutor.notebook_code(with_hints=with_hints)
    some_hint = next(iter(units.BY_ID["ex1_counts"].hints.values()))
    assert some_hint in cells[True] and some_hint not in cells[False]


def test_the_machinery_cells_open_collapsed_under_a_title(tmp_path):
    release = nbformat.read(assign.notebook_path(ROOT, "release"), as_version=4)
    hidden = {cell.get("id"): cell for cell in release.cells if cell.metadata.get("jupyter", {}).get("source_hidden")}
    assert set(hidden) == set(assign.HIDDEN_CELLS)
    for grade_id, cell in hidden.items():
        assert cell.metadata["cellView"] == "form"  # Colab's way: a form showing the title line only
        assert cell.source.splitlines()[0] == f"# @title {assign.HIDDEN_CELLS[grade_id]}"
    # the answer cells and the network stay in view
    shown = [cell for cell in release.cells if cell.get("id") in ("model", "forward", "ex1_logprobs")]
    assert len(shown) == 3 and not any(cell.metadata.get("jupyter") for cell in shown)
