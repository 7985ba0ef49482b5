"""The HTML feedback page: every unit's verdict, and for a wrong one a map of where it is off, never values; and the
terminal table, which wraps long messages instead of cutting them."""
from __future__ import annotations

import re

import pytest

from backprop_ninja.assign import REPO
from backprop_ninja.export.feedback import CELL_PX, mismatch_svg, to_html
from backprop_ninja.export.table import MESSAGE_WIDTH, format_table
from backprop_ninja.grade.cli import grade_one
from backprop_ninja.grade.verdict import OK, WRONG, SubmissionResult, Verdict
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
    widths = re.findall(r'<rect x="\d+" y="\d+" width="(\d+)"', rows["ex1_logprobs"])
    assert sum(int(w) // CELL_PX for w in widths) == sum(map(sum, result.by_unit()["ex1_logprobs"].mismatch)) > 0


def test_the_map_covers_exactly_the_positions_that_are_off():
    mismatch = [[True, True, False, True], [False, False, False, False], [False, True, True, True]]
    svg = mismatch_svg(mismatch)
    covered = set()
    for x, y, width in re.findall(r'<rect x="(\d+)" y="(\d+)" width="(\d+)"', svg):
        covered |= {(int(y) // CELL_PX, (int(x) + k) // CELL_PX) for k in range(0, int(width), CELL_PX)}
    assert covered == {(r, c) for r, row in enumerate(mismatch) for c, off in enumerate(row) if off}
    assert svg.count("<rect x=") == 3  # one element per run along a row


def test_page_shows_no_gradient_values(ben_page):
    _, page = ben_page
    text = re.sub(r"<svg.*?</svg>", "", page, flags=re.S)  # svg coordinates are positions, not values
    assert not re.search(r"\d\.\d{3,}|\de-\d", text), "a float made it onto the feedback page"
    assert "BEGIN" not in page and "assert" not in page


def _one_unit(message: str, error: str | None = None) -> SubmissionResult:
    return SubmissionResult("hw.ipynb", [Verdict("ex1_logprobs", WRONG, 0, 1, message)], error=error)


def test_backticks_become_code_and_student_text_stays_text():
    message = ("only the branch through `probs` is there; `counts` is also used by "
               "`<script>alert(1)</script>` & `a<b`; a lone ` stays")
    page = to_html(_one_unit(message, error="cell `dx` raised <b>boom</b>"))
    row = _rows(page)["ex1_logprobs"]
    assert "<code>probs</code>" in row and "<code>counts</code>" in row
    assert "<code>&lt;script&gt;alert(1)&lt;/script&gt;</code>" in row and "<code>a&lt;b</code>" in row
    assert "&amp;" in row and "a lone ` stays" in row
    assert "<script" not in page and "<b>boom" not in page
    assert "could not be graded: cell <code>dx</code> raised &lt;b&gt;boom&lt;/b&gt;" in page
    assert "`probs`" not in page  # no raw backtick pair left around code


def test_real_messages_with_backticks_render_as_code(ben_page):
    result, page = ben_page
    rows = _rows(page)
    quoted = [v for v in result.verdicts if re.search(r"`[^`]+`", v.message)]
    assert quoted, "expected a verdict for ben that quotes a name in backticks"
    for verdict in quoted:
        assert "`" not in rows[verdict.unit] and "<code>" in rows[verdict.unit]


def test_table_wraps_long_messages_under_the_message_column():
    words = [f"word{i}" for i in range(60)]
    long_message = " ".join(words) + " " + "x" * (MESSAGE_WIDTH + 20)
    result = SubmissionResult("hw.ipynb", [Verdict("ex1_logprobs", WRONG, 0, 1, long_message),
                                           Verdict("ex1_probs", OK, 1, 1, "right")])
    lines = format_table(result).splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("ex1_logprobs"))
    column = lines[0].index("message")
    assert lines[first].index("word0") == column
    following = lines[first + 1:]
    continuation = following[:next(i for i, line in enumerate(following) if line.startswith("ex1_probs"))]
    assert len(continuation) >= 3
    for line in [lines[first]] + continuation:
        assert len(line) - column <= MESSAGE_WIDTH
    for line in continuation:
        assert line[:column].strip() == "" and line[column] != " "
    shown = "".join(line[column:].replace(" ", "") for line in [lines[first]] + continuation)
    assert shown == long_message.replace(" ", "")  # nothing cut, no "..."
    assert "..." not in "\n".join(lines)


def test_table_keeps_short_messages_on_one_line():
    result = _one_unit("off by a factor (n-1)/n: Bessel's correction, n vs n-1")
    lines = format_table(result).splitlines()
    assert lines[2].endswith("off by a factor (n-1)/n: Bessel's correction, n vs n-1")
    assert lines[3].startswith("total: 0/1")
