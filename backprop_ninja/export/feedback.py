"""One self-contained HTML feedback page per submission.

Each unit gets a row: status, points and the diagnostic message. A wrong unit also gets a small map of *where* its
gradient is off (an inline SVG, one square per position, dark where the answer differs). It shows positions only:
no value of the student's answer or of the reference ever reaches the page.
"""
from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np

from backprop_ninja.grade.verdict import SubmissionResult, Verdict

FEEDBACK_NAME = "feedback.html"

CELL_PX = 6  # size of one position in the map

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; }
td, th { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: left; vertical-align: top; }
.ok { color: #17702f; } .bad { color: #b3261e; } .luck { color: #8a5a00; }
svg { border: 1px solid #999; margin-top: 4px; }
.legend { color: #555; font-size: 90%; }
"""


_BACKTICKS = re.compile(r"`([^`\n]+)`")


def message_html(text: str) -> str:
    """A message as HTML: escaped first, then each pair of backticks becomes <code>...</code>. Escaping comes
    first, so nothing in the text (a student's variable name, say) can inject markup; a lone backtick stays as is."""
    return _BACKTICKS.sub(r"<code>\1</code>", html.escape(text))


def mismatch_svg(mismatch: list[list[bool]]) -> str:
    """A map of a 2-D boolean matrix: dark squares where the answer is off, each run of them along a row drawn as
    one rectangle (a wrong 64 x 64 map is then a few dozen elements, not thousands: the page stays small)."""
    rows, cols = len(mismatch), len(mismatch[0]) if mismatch else 0
    squares = "".join(
        f'<rect x="{c * CELL_PX}" y="{r * CELL_PX}" width="{length * CELL_PX}" height="{CELL_PX}"/>'
        for r, c, length in _runs(mismatch))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{cols * CELL_PX}" height="{rows * CELL_PX}" '
            f'role="img" aria-label="positions that differ"><rect width="100%" height="100%" fill="#f4f4f4"/>'
            f'<g fill="#b3261e">{squares}</g></svg>')


def _runs(mismatch: list[list[bool]]) -> list[tuple[int, int, int]]:
    """(row, first column, length) of every run of True along the rows, in reading order."""
    cells = np.asarray(mismatch, dtype=bool).reshape(len(mismatch), -1)
    padded = np.zeros((cells.shape[0], cells.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = cells
    edges = np.diff(padded, axis=1)  # +1 where a run starts, -1 just after it ends
    starts_r, starts_c = np.nonzero(edges == 1)
    _, ends_c = np.nonzero(edges == -1)  # row-major order: the n-th end closes the n-th start
    return list(zip(starts_r.tolist(), starts_c.tolist(), (ends_c - starts_c).tolist()))


def _row(verdict: Verdict) -> str:
    from backprop_ninja import units  # the table imports torch: only to render (a batch renders in its workers)

    unit = units.BY_ID.get(verdict.unit)
    label = f"<code>{html.escape(unit.answer)}</code>" if unit else html.escape(verdict.unit)
    css = ("luck" if verdict.note else "ok") if verdict.passed else "bad"  # right by luck: points, with a note
    detail = message_html(verdict.message)
    if not verdict.passed and verdict.mismatch and any(any(row) for row in verdict.mismatch):
        detail += ("<br>" + mismatch_svg(verdict.mismatch)
                   + '<div class="legend">red: positions where your gradient is off (rows × columns)</div>')
    return (f"<tr><td>{html.escape(verdict.unit)}</td><td>{label}</td><td class='{css}'>{verdict.status}</td>"
            f"<td>{verdict.points:g}/{verdict.max_points:g}</td><td>{detail}</td></tr>")


def to_html(result: SubmissionResult, title: str = "Backprop Ninja feedback") -> str:
    head = (f"<p class='bad'>This submission could not be graded: {message_html(result.error)}</p>"
            if result.error else "")
    rows = "\n".join(_row(v) for v in result.verdicts)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Score: <b>{result.score:g} / {result.max_score:g}</b></p>{head}
<p class="legend">Each gradient was re-run on five sets of inputs (batch sizes 17, 32 and 50 on fresh seeds; for
Exercise 1 also the notebook's own batch; and a set in float64 built to expose near-misses) with the correct upstream
gradients, so a mistake in one unit does not count against the next.</p>
<table><tr><th>unit</th><th>answer</th><th>status</th><th>points</th><th>what the grader saw</th></tr>
{rows}
</table></body></html>
"""


def write_feedback(result: SubmissionResult, out_dir: str | Path) -> Path:
    return write_page(to_html(result), out_dir)


def write_page(page: str, out_dir: str | Path) -> Path:
    """out_dir/feedback.html, from a page already rendered (a batch's workers render theirs)."""
    path = Path(out_dir) / FEEDBACK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    return path
