"""Exports of a graded folder: the Canvas gradebook import CSV (with a roster) and the long-format CSV.

One module fixture grades the shipped examples (ada: all right, ben: typical mistakes, cleo: blank) and a copy of
ben handed in under the id `-2+3` (a spreadsheet would read it as a formula) with the real batch; the tests only
read and export that folder.
"""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from backprop_ninja.cli import main
from backprop_ninja.export.canvas import CANVAS_COLUMNS
from backprop_ninja.export.cli import EXIT_ERROR, EXIT_INCOMPLETE, EXIT_OK

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "submitted"
NOTEBOOK = Path("backprop_ninja") / "backprop_ninja.ipynb"
FORMULA_ID = "-2+3"
FORMULA_NAME = '=HYPERLINK("http://example.invalid","x")'
ROSTER_HEADER = CANVAS_COLUMNS + ["Backprop Ninja (777)", "Current Score"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory, names_file) -> Path:
    tree = tmp_path_factory.mktemp("class") / "submitted"
    for student, example in [("ada", "ada"), ("ben", "ben"), ("cleo", "cleo"), (FORMULA_ID, "ben")]:
        target = tree / student / NOTEBOOK
        target.parent.mkdir(parents=True)
        shutil.copyfile(EXAMPLES / example / NOTEBOOK, target)
    out = tree.parent / "graded"
    assert main(["grade", str(tree), "--out", str(out), "--jobs", "2"]) == 0
    return out


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as file:
        return list(csv.reader(file))


def grades(graded: Path) -> dict[str, dict[str, str]]:
    with open(graded / "grades.csv", newline="", encoding="utf-8") as file:
        return {row["student_id"].lstrip("'"): row for row in csv.DictReader(file)}


def write_roster(path: Path, rows: list[list[str]], header=ROSTER_HEADER) -> Path:
    """A roster laid out like Canvas's gradebook export, its Points Possible row included."""
    with open(path, "w", newline="", encoding="utf-8-sig") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerow(["    Points Possible", "", "", "", "", "60", "(read only)"])
        writer.writerows(rows)
    return path


def class_roster(tmp_path: Path) -> Path:
    """ada (her login in capitals), ben, the formula id with a formula for a name, and dora, who handed nothing
    in; cleo, who was graded, is missing."""
    return write_roster(tmp_path / "roster.csv", [
        ["Lovelace, Ada", "101", "S101", "ADA", "A1", "", "95"],
        ["Bell, Ben", "102", "S102", "ben", "A1", "", "80"],
        [FORMULA_NAME, "103", "S103", FORMULA_ID, "A2", "", ""],
        ["Diaz, Dora", "104", "S104", "dora", "A2", "", ""],
    ])


def by_login(rows: list[list[str]]) -> dict[str, list[str]]:
    return {row[3].lstrip("'"): row for row in rows[2:]}


def test_canvas_export_has_the_import_columns_the_totals_and_a_warning_for_who_is_missing(graded, tmp_path,
                                                                                          capsys):
    out = tmp_path / "canvas.csv"
    status = main(["export", "canvas", str(graded), "--roster", str(class_roster(tmp_path)), "--out", str(out),
                   "--assignment-id", "777"])

    assert status == EXIT_INCOMPLETE  # cleo is graded but not in the roster
    printed = capsys.readouterr()
    assert "1 graded students are not in the roster" in printed.err and "  cleo: 0/" in printed.err
    assert "dora" in printed.out and "--missing-as-zero" in printed.out
    rows = read_rows(out)
    table = grades(graded)
    assert rows[0] == CANVAS_COLUMNS + ["Backprop Ninja (777)"]
    assert rows[1] == ["Points Possible", "", "", "", "", table["ada"]["max"]]
    students = by_login(rows)
    assert set(students) == {"ADA", FORMULA_ID, "ben", "dora"}  # the roster's students, cleo not among them
    assert students["ADA"][:3] == ["Lovelace, Ada", "101", "S101"] and students["ADA"][5] == table["ada"]["total"]
    assert students["ben"][5] == table["ben"]["total"] != table["ada"]["total"]
    assert students[FORMULA_ID][5] == table[FORMULA_ID]["total"]
    assert students["dora"][5] == ""  # no submission: an empty cell, which Canvas leaves alone, not a 0


def test_canvas_cells_from_students_are_never_formulas(graded, tmp_path):
    out = tmp_path / "canvas.csv"
    main(["export", "canvas", str(graded), "--roster", str(class_roster(tmp_path)), "--out", str(out)])

    row = by_login(read_rows(out))[FORMULA_ID]
    assert row[0] == "'" + FORMULA_NAME and row[3] == "'" + FORMULA_ID
    assert read_rows(out)[0][-1] == "Backprop Ninja"  # no --assignment-id: Canvas matches the name


def test_missing_as_zero_and_no_points_possible(graded, tmp_path):
    out = tmp_path / "canvas.csv"
    main(["export", "canvas", str(graded), "--roster", str(class_roster(tmp_path)), "--out", str(out),
          "--missing-as-zero", "--no-points-possible"])

    rows = read_rows(out)
    assert "Points Possible" not in rows[1][0]
    assert {row[3]: row[5] for row in rows[1:]}["dora"] == "0"


def test_a_late_penalty_column_is_the_score_canvas_gets(graded, tmp_path):
    penalised = tmp_path / "graded"
    shutil.copytree(graded, penalised, ignore=shutil.ignore_patterns(".batch"))
    rows = read_rows(penalised / "grades.csv")
    total = rows[0].index("total")
    if "total_after_penalty" not in rows[0]:  # written by a kit without the lateness columns
        for row in rows:
            row.append("total_after_penalty")
    penalised_total = rows[0].index("total_after_penalty")
    for row in rows[1:]:
        row[penalised_total] = str(float(row[total]) * 0.5)  # as if every student lost half for lateness
    with open(penalised / "grades.csv", "w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows(rows)
    roster = write_roster(tmp_path / "roster.csv", [["Lovelace, Ada", "101", "S101", "ada", "A1", "", ""]])
    out = tmp_path / "canvas.csv"

    assert main(["export", "canvas", str(penalised), "--roster", str(roster), "--out", str(out)]) \
        == EXIT_INCOMPLETE
    ada_total = float(grades(graded)["ada"]["total"])
    assert ada_total > 0 and float(read_rows(out)[2][5]) == ada_total * 0.5


def test_an_exact_roster_is_a_clean_export_matched_on_another_column(graded, tmp_path, capsys):
    roster = write_roster(tmp_path / "roster.csv",
                          [[f"Name {s}", str(i), s, "", "A1", "", ""] for i, s in enumerate(grades(graded))])
    out = tmp_path / "canvas.csv"

    assert main(["export", "canvas", str(graded), "--roster", str(roster), "--out", str(out),
                 "--match-column", "SIS User ID"]) == EXIT_OK
    assert "4 of 4 roster students scored" in capsys.readouterr().out


@pytest.mark.parametrize("rows, header, expected", [
    ([["Bell, Ben", "102", "S102", "ben", "A1", "", ""]], ["Student", "ID", "Section"], "has no column 'SIS Login ID'"),
    ([["Bell, Ben", "102", "S102", "ben", "A1", "", ""], ["Ben Again", "105", "S105", "BEN", "A1", "", ""]],
     ROSTER_HEADER, "lines 3 and 4 have the same SIS Login ID"),
])
def test_a_bad_roster_is_refused_naming_the_file_and_the_fix(graded, tmp_path, capsys, rows, header, expected):
    roster = write_roster(tmp_path / "roster.csv", rows, header=header)
    out = tmp_path / "canvas.csv"

    assert main(["export", "canvas", str(graded), "--roster", str(roster), "--out", str(out)]) == EXIT_ERROR
    error = capsys.readouterr().err
    assert str(roster) in error and expected in error and not out.exists()


def test_an_export_never_overwrites_the_grades_it_reads(graded, capsys):
    before = (graded / "grades.csv").read_bytes()

    assert main(["export", "long", str(graded), "--out", str(graded / "grades.csv")]) == EXIT_ERROR
    assert "is an input of this export" in capsys.readouterr().err
    assert (graded / "grades.csv").read_bytes() == before


def test_long_format_has_a_row_per_student_and_unit_adding_up_to_the_totals(graded, tmp_path):
    out = tmp_path / "long.csv"
    assert main(["export", "long", str(graded), "--out", str(out)]) == EXIT_OK

    header, *rows = read_rows(out)
    table = grades(graded)
    unit_names = [name[:-len("_status")] for name in next(iter(table.values())) if name.endswith("_status")]
    assert header == ["student_id", "unit", "points", "max_points", "status"]
    assert len(rows) == len(table) * len(unit_names)
    assert {(row[0].lstrip("'"), row[1]) for row in rows} == {(s, u) for s in table for u in unit_names}
    for student, row in table.items():
        mine = [r for r in rows if r[0].lstrip("'") == student]
        assert sum(float(r[2]) for r in mine) == pytest.approx(float(row["total"]))
        assert sum(float(r[3]) for r in mine) == pytest.approx(float(row["max"]))
        assert [r[4] for r in mine] == [row[f"{unit}_status"] for unit in unit_names]
    assert {r[0] for r in rows if r[0].lstrip("'") == FORMULA_ID} == {"'" + FORMULA_ID}  # never a formula
