"""Names and messages from students are safe in every CSV the kit writes and in the terminal.

A batch over notebooks named like spreadsheet formulas (`=1+1.ipynb`, `+C2.ipynb`, `-1+1.ipynb`, `@SUM(A1).ipynb`)
and like terminal escape sequences, from a folder and from a zip, then the cohort report built from it: every cell
of grades.csv and matrix.csv is inert in a spreadsheet and holds no control character, numbers stay numbers, and
each row still says which student and which file it is. The batch runs a stand-in engine (`warm_up`/`grade` below,
loaded by the workers from this module) whose messages quote the file name, as the real engine's errors do.
"""
from __future__ import annotations

import csv
import json
import re
import zipfile
from pathlib import Path

import pytest

from backprop_ninja import batch
from backprop_ninja.batch import run as batch_run
from backprop_ninja.cli import main
from backprop_ninja.export.safe_text import csv_cell, csv_rows, printable, terminal_text
from backprop_ninja.export.table import format_table
from backprop_ninja.grade.verdict import SubmissionResult, Verdict

UNITS = [("ex1_probs", 1.0), ("ex2_logits", 2.0)]
NEGATIVE_POINTS = -1.5  # what the stand-in gives `-1+1`: a number that starts with '-' must stay a number
ESC_NAME = "\x1b[31mred\x1b[0m\x1b]0;pwned\x07"
HOSTILE_STEMS = ["=1+1", "+C2", "-1+1", "@SUM(A1)", ESC_NAME, "alice"]
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
ESCAPE_SEQUENCE_START = re.compile("[\x1b\x07\x9b\x9d]")  # ESC, BEL, CSI, OSC (the bar's own \r is fine)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


# ---------------------------------------------------------------- the stand-in engine (runs in the workers)

def warm_up(limits=None):
    return UNITS


def grade(path, limits):
    """Every unit wrong, with a message quoting the file name and a formula, like an engine error would."""
    name = Path(path).name
    points = NEGATIVE_POINTS if name.startswith("-1+1") else 0.0
    message = f"=HYPERLINK(\"http://x\") in {name}\r\n\ttrailing \x1b[2J"
    verdicts = [{"unit": unit, "status": "wrong", "points": points, "max_points": max_points, "message": message,
                 "exact": None, "max_diff": None, "mismatch": None} for unit, max_points in UNITS]
    error = f"=cmd|' /C calc'!A0 {name} is not a notebook" if name.startswith("@") else None
    result = {"submission": str(path), "verdicts": verdicts, "error": error, "execution_time": 0.01,
              "isolation": "-stand-in"}
    return result, {"score": points * len(UNITS), "tests": []}


# ---------------------------------------------------------------- helpers

def write_notebook(path: Path) -> Path:
    path.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def assert_every_cell_safe(rows: list[list[str]], numeric_columns: set[str]) -> None:
    """No control character anywhere; no formula start except in a numeric column, which must hold a number."""
    header = rows[0]
    for row in rows:
        for column, cell in zip(header, row):
            assert not CONTROL.search(cell), f"control character in {column}: {cell!r}"
            if column in numeric_columns and row is not header:
                float(cell)  # a number, written as one
            else:
                assert not cell.lstrip(" ").startswith(FORMULA_START), f"formula in {column}: {cell!r}"


def shown(text: str) -> str:
    """What a cell shows for a string: cleaned, with the OWASP quote read back off."""
    return text[1:] if text.startswith("'") else text


def run_batch(source: Path, out: Path):
    return batch.run_batch(source, out, 1, grader_module="test_csv_safety", progress=False)


# ---------------------------------------------------------------- the helper itself

@pytest.mark.parametrize("value, expected", [
    ("=1+1", "'=1+1"), ("+C2", "'+C2"), ("-1+1", "'-1+1"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1+1", "' =1+1"), ("\rx", "' x"), ("  =1", "'  =1"),
    ("a\x1b[31mb", "a\\x1b[31mb"), ("a\x9b1mb", "a\\x9b1mb"), ("line\nnext", "line next"),
    ("name\u202egnp.exe", "name\\u202egnp.exe"), ("alice", "alice"), ("1-2", "1-2"),
])
def test_csv_cell_neutralises_formulas_and_control_characters(value, expected):
    assert csv_cell(value) == expected


@pytest.mark.parametrize("number", [-1.5, -2, 0, 3.25])
def test_numbers_stay_numbers(number):
    assert csv_cell(number) is number
    assert csv_rows([["-x", number]]) == [["'-x", number]]


def test_terminal_text_keeps_lines_and_shows_escapes():
    text = terminal_text("first\x1b[2J line\r\nsecond\x07")
    assert text == "first\\x1b[2J line \nsecond\\x07"
    assert not CONTROL.search(text.replace("\n", ""))


def test_the_cli_table_shows_no_escape_sequence():
    message = "your code raised ValueError: \x1b]0;owned\x07\x1b[2Jgone\rall 32/32"
    result = SubmissionResult(submission=f"/tmp/{ESC_NAME}.ipynb", error="\x1b[31mno\x1b[0m",
                              verdicts=[Verdict("ex1_probs", "error", 0.0, 1.0, message)])
    table = format_table(result)
    assert not CONTROL.search(table.replace("\n", ""))
    assert "\\x1b]0;owned\\x07\\x1b[2Jgone all 32/32" in table  # the student's text is still there, inert
    assert printable(f"/tmp/{ESC_NAME}.ipynb") in table


# ---------------------------------------------------------------- a batch and its report

@pytest.fixture(params=["folder", "zip"])
def hostile_class(request, tmp_path) -> Path:
    folder = tmp_path / "class"
    folder.mkdir()
    for stem in HOSTILE_STEMS:
        write_notebook(folder / f"{stem}.ipynb")
    if request.param == "folder":
        return folder
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for stem in HOSTILE_STEMS:
            zf.write(folder / f"{stem}.ipynb", f"{stem}.ipynb")
    return archive


def test_grades_csv_and_matrix_csv_are_safe_and_students_identifiable(hostile_class, tmp_path, capsys):
    out = tmp_path / "out"
    summary = run_batch(hostile_class, out)
    assert summary.total == len(HOSTILE_STEMS)

    rows = read_rows(out / "grades.csv")
    header = rows[0]
    numeric = {unit for unit, _ in UNITS} | {"total", "max", "total_after_penalty"}  # no due date: = total
    assert_every_cell_safe(rows, numeric)
    by_id = {shown(row[0]): dict(zip(header, row)) for row in rows[1:]}
    # every student is there once, under the id the batch gave them (their folder in --out)
    expected_ids = {batch.safe_student_id(stem) for stem in HOSTILE_STEMS}
    assert set(by_id) == expected_ids and len(rows) == 1 + len(HOSTILE_STEMS)
    for student_id in expected_ids:
        assert (out / student_id / "results.json").is_file()
    # each row names its file, readably (escapes shown as text), so the instructor can find it
    for stem in HOSTILE_STEMS:
        row = by_id[batch.safe_student_id(stem)]
        assert shown(row["source"]).endswith(printable(f"{stem}.ipynb"))
    # formulas neutralised in the id, the file and the messages; numbers stay numbers
    assert by_id["_1+1"]["student_id"] == "_1+1"  # '=' is not kept in an id (it names a folder)
    assert by_id["+C2"]["student_id"] == "'+C2"
    assert by_id["-1+1"]["student_id"] == "'-1+1"
    assert by_id["-1+1"]["ex1_probs"] == "-1.5" and by_id["-1+1"]["total"] == "-3"
    assert by_id["+C2"]["isolation"] == "'-stand-in"
    assert by_id["@SUM_A1_"]["student_id"] == "'@SUM_A1_"
    assert by_id["@SUM_A1_"]["error"] == "'=cmd|' /C calc'!A0 @SUM(A1).ipynb is not a notebook"

    report_dir = tmp_path / "report"
    assert main(["report", str(out), "--out", str(report_dir)]) == 0
    assert not CONTROL.search(capsys.readouterr().out.replace("\n", ""))
    matrix = read_rows(report_dir / "matrix.csv")
    assert_every_cell_safe(matrix, numeric_columns=set())
    assert {shown(row[0]) for row in matrix[1:]} == expected_ids


def test_the_batch_prints_no_escape_sequence_from_a_file_name(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "class"
    folder.mkdir()
    for stem in HOSTILE_STEMS:
        write_notebook(folder / f"{stem}.ipynb")
    skipped = "\x1b]0;skipped\x07"  # not matched by --id-pattern: the batch names it in a warning
    write_notebook(folder / f"{skipped}.ipynb")
    monkeypatch.setattr(batch_run, "DEFAULT_GRADER", "test_csv_safety")
    pattern = r"(?P<student_id>(?!\x1b\]).+)\.ipynb"

    code = main(["grade", str(folder), "--out", str(tmp_path / "out"), "--jobs", "1", "--id-pattern", pattern])

    printed = capsys.readouterr()
    assert code == batch.EXIT_SOME_NOT_GRADED  # the `@SUM(A1)` row says it could not be graded
    assert f"of {len(HOSTILE_STEMS)} submissions" in printed.out
    assert printable(f"{skipped}.ipynb") in printed.err
    for text in (printed.out, printed.err):
        assert not ESCAPE_SEQUENCE_START.search(text)


def test_a_batch_error_naming_files_prints_no_escape_sequence(tmp_path, capsys):
    folder = tmp_path / "class"
    folder.mkdir()
    write_notebook(folder / "a\x1b[1m.ipynb")  # both become the student id a_1m: the batch refuses, naming both
    write_notebook(folder / "a_1m.ipynb")

    assert main(["grade", str(folder), "--out", str(tmp_path / "out")]) == batch.EXIT_BATCH_FAILED

    err = capsys.readouterr().err
    assert "a_1m" in err and "a\\x1b[1m.ipynb" in err
    assert not CONTROL.search(err.replace("\n", ""))
