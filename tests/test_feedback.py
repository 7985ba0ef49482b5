"""The HTML feedback page: every unit's verdict, and for a wrong one a map of where it is off, never values."""
from __future__ import annotations

import re

import pytest

from backprop_ninja.assign import REPO
from backprop_ninja.grade.cli import grade_one
from backprop_ninja import units

BEN = REPO / "examples" / "submitted" / "ben" / "backprop_ninja" / "backprop_ninja.ipynb"


@pytest.fixture(scope="module")
def ben_page(tmp_path_factory, names_file):
    out = tmp_path_factory.mktemp("ben")
    result = grade_one(BEN, out)
    return result, (out / "feedback.html").read_text()


def _rows(page):
    return {m.group(1): m.group(2) for m in re.finditer(r"<tr><td>(\w+)</td>(.*?)</tr>", page, re.S)}


def test_page_lists_every_unit_with_its_status(ben_page):
    result, page = ben_page
    rows = _rows(page)
    assert set(rows) == {u.grade_id for u in units.UNITS}
    for verdict in result.verdicts:
        assert f">{verdict.status}<" in rows[verdict.unit]
    assert f"Score: <b>{result.score:g} / {result.max_score:g}</b>" in page


def test_wrong_units_get_a_position_map_and_right_ones_none(ben_page):
    result, page = ben_page
    rows = _rows(page)
    for verdict in result.verdicts:
        has_map = "<svg" in rows[verdict.unit]
        assert has_map == (not verdict.passed and bool(verdict.mismatch) and any(map(any, verdict.mismatch)))
    # a sign error in dlogprobs is off exactly at the n picked positions, one per row of the batch
    squares = re.findall(r'<rect x=', rows["ex1_logprobs"])
    assert len(squares) == sum(map(sum, result.by_unit()["ex1_logprobs"].mismatch)) > 0


def test_page_shows_no_gradient_values(ben_page):
    _, page = ben_page
    text = re.sub(r"<svg.*?</svg>", "", page, flags=re.S)  # svg coordinates are positions, not values
    assert not re.search(r"\d\.\d{3,}|\de-\d", text), "a float made it onto the feedback page"
    assert "BEGIN" not in page and "assert" not in page
