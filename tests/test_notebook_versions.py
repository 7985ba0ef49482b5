"""One reading of a notebook on every path: a version 3 (or 2) notebook is upgraded as nbformat upgrades it.

nbgrader reads every notebook with nbformat (nbconvert's Exporter calls `nbformat.read(f, as_version=4)`), so a
version 3 notebook reaches the grader already upgraded there. The CLI, the batch and the Gradescope bundle read the
file themselves (grade/extract.py); these tests hold that reading to nbformat's, cell by cell, and show that a
version 3 copy of the examples' correct notebook earns full points from the CLI and from the batch.
"""
from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import nbformat
import pytest

from backprop_ninja import batch
from backprop_ninja.cli import main
from backprop_ninja.grade import extract

ADA = Path(__file__).resolve().parent.parent / "examples" / "submitted" / "ada" / "backprop_ninja" / \
    "backprop_ninja.ipynb"


def write_as_version(path: Path, version: int) -> Path:
    """The correct example notebook saved in an older format, as nbformat writes it."""
    notebook = nbformat.convert(copy.deepcopy(nbformat.read(ADA, as_version=4)), version)
    path.write_text(nbformat.writes(notebook), encoding="utf-8")
    return path


def as_nbformat_reads_it(path: Path) -> list[tuple]:
    """(type, source, grade_id) of every cell, as nbgrader's reader gives them."""
    return [_summary(cell) for cell in nbformat.read(path, as_version=4).cells]


def as_extract_reads_it(path: Path) -> list[tuple]:
    return [_summary(cell) for cell in extract.notebook_cells(json.loads(path.read_text()), path)]


def _summary(cell: dict) -> tuple:
    nbgrader = cell.get("metadata", {}).get("nbgrader", {})
    return cell.get("cell_type"), extract.cell_source(cell), nbgrader.get("grade_id")


def _same_extraction(a: extract.Extraction, b: extract.Extraction) -> None:
    assert (a.answers, a.stubs, a.positions, a.added, a.problems, a.error) == \
        (b.answers, b.stubs, b.positions, b.added, b.problems, b.error)


# ---- the reading, against nbformat's ----

@pytest.mark.parametrize("version", [2, 3])
def test_an_old_notebook_is_read_as_nbformat_upgrades_it(tmp_path, version):
    old = write_as_version(tmp_path / f"v{version}.ipynb", version)
    assert json.loads(old.read_text())["nbformat"] == version and "cells" not in json.loads(old.read_text())

    assert as_extract_reads_it(old) == as_nbformat_reads_it(old)
    # the grade_ids survive the round trip, so every answer is found where the version 4 file has it
    _same_extraction(extract.read_answers(old), extract.read_answers(ADA))
    assert len(extract.read_answers(old).answers) > 20


def test_odd_version_3_cells_are_upgraded_like_nbformat(tmp_path):
    def code(source, grade_id=None):
        metadata = {"nbgrader": {"grade_id": grade_id, "solution": True}} if grade_id else {}
        return {"cell_type": "code", "input": source, "language": "python", "outputs": [], "metadata": metadata}

    worksheets = [
        {"cells": [
            {"cell_type": "heading", "level": 2, "source": ["Exercise\n", "one"], "metadata": {}},
            code(["dlogprobs = torch.zeros_like(logprobs)", "dlogprobs[range(n), Yb] = -1.0 / n"], "ex1_logprobs"),
            {"cell_type": "markdown", "source": ["dprobs = dlogprobs / probs"],
             "metadata": {"nbgrader": {"grade_id": "ex1_probs"}}},  # retyped: still the answer
            {"cell_type": "html", "source": "<b>hi</b>", "metadata": {}},
        ], "metadata": {}},
        {"cells": [code(["def helper(x):\n", "    return x\n"]), {"cell_type": "raw", "source": "", "metadata": {}}],
         "metadata": {}},  # a second worksheet: flattened after the first
    ]
    path = tmp_path / "odd.ipynb"
    path.write_text(json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": worksheets}))

    assert as_extract_reads_it(path) == as_nbformat_reads_it(path)
    found = extract.read_answers(path)
    assert found.answers == {"ex1_logprobs": "dlogprobs = torch.zeros_like(logprobs)\n"
                                             "dlogprobs[range(n), Yb] = -1.0 / n",
                             "ex1_probs": "dprobs = dlogprobs / probs"}
    assert found.added == [(4, "def helper(x):\n    return x\n")]


# ---- what is refused, and never a crash ----

def test_a_version_1_notebook_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "ancient.ipynb"
    path.write_text(json.dumps({"nbformat": 1, "cells": []}))
    assert extract.read_answers(path).error == (
        f"{path} is a Jupyter notebook of version 1, older than the grader reads (versions 2 to 4): open it in "
        f"Jupyter and save it (Jupyter saves version 4), then submit the .ipynb file")


def test_a_version_3_notebook_without_worksheets_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "renumbered.ipynb"
    path.write_text(json.dumps({"nbformat": 3, "cells": [{"cell_type": "code", "source": "x = 1"}]}))
    error = extract.read_answers(path).error
    assert error.startswith(f"{path} says it is a Jupyter notebook of version 3, but it has no list of worksheets")
    assert error.endswith("then submit the .ipynb file")


@pytest.mark.parametrize("worksheets", [
    [1, None, "x"], [{"cells": "x"}, {"nope": []}],
    [{"cells": [1, None, {"cell_type": "code", "input": 5}, {"cell_type": "heading", "level": 10 ** 9,
                                                          "source": ["a", 3]}]}],
])
def test_damaged_worksheets_give_an_empty_reading_not_a_crash(tmp_path, worksheets):
    path = tmp_path / "damaged.ipynb"
    path.write_text(json.dumps({"nbformat": 3, "worksheets": worksheets}))
    found = extract.read_answers(path)
    assert found.error is None and found.answers == {} and found.added == []


def test_version_true_is_not_a_version(tmp_path):
    path = tmp_path / "bool.ipynb"
    path.write_text(json.dumps({"nbformat": True, "worksheets": []}))
    assert "not a Jupyter notebook (version 4): it has no list of cells" in extract.read_answers(path).error


# ---- full points on every path ----

def test_a_version_3_copy_of_the_correct_notebook_gets_full_points_from_the_cli_and_the_batch(
        tmp_path, names_file, capsys):
    old = write_as_version(tmp_path / "ada_v3.ipynb", 3)

    assert main(["grade", str(old), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["score"] == sum(test["max_score"] for test in printed["tests"]) > 0

    folder = tmp_path / "class"
    folder.mkdir()
    write_as_version(folder / "ada_v3.ipynb", 3)
    (folder / "ada_v4.ipynb").write_bytes(ADA.read_bytes())
    out = tmp_path / "out"
    assert main(["grade", str(folder), "--out", str(out), "--jobs", "1"]) == batch.EXIT_ALL_GRADED
    with open(out / "grades.csv", newline="") as f:
        rows = {row["student_id"]: row for row in csv.DictReader(f)}
    assert rows["ada_v3"]["total"] == rows["ada_v3"]["max"] == str(printed["score"]).removesuffix(".0")
    assert {k: v for k, v in rows["ada_v3"].items() if k not in ("student_id", "source")} == \
        {k: v for k, v in rows["ada_v4"].items() if k not in ("student_id", "source")}
