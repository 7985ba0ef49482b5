"""docs/units.md, written from the unit table: `python -m backprop_ninja.unit_docs` (a test checks it is current)."""
from __future__ import annotations

from backprop_ninja import diagnose, units
from backprop_ninja.assign import REPO

DOC = REPO / "docs" / "units.md"


def render() -> str:
    lines = [
        "# The graded units",
        "",
        "Generated from `backprop_ninja/units.py` by `python -m backprop_ninja.unit_docs`; do not edit by hand.",
        "",
        f"{len(units.UNITS)} units, {units.TOTAL_POINTS} points. *Used by* lists the later lines that read the "
        "variable: its gradient is the sum of one share per use, and the grader recognises an answer that is "
        "missing one of them.",
        "",
        "| unit | answer | made by | used by (its gradient flows back from) | points | also forbidden |",
        "|---|---|---|---|---|---|",
    ]
    for u in units.UNITS:
        used_by = ", ".join(f"`{c}`" for c in u.consumers) or "-"
        forbidden = ", ".join(f"`{f}`" for f in u.forbidden) or "-"
        lines.append(f"| `{u.grade_id}` | `{u.answer}` | `{u.forward}` | {used_by} | {u.points} | {forbidden} |")
    lines += ["", "Every answer cell is also scanned for autograd: "
              + ", ".join(f"`.{a}`" for a in units.AUTOGRAD_ATTRIBUTES) + ", "
              + ", ".join(f"`{m}`" for m in units.AUTOGRAD_MODULES) + "."]
    lines += ["", "## Mistake classes", "",
              "How the grader and the notebook's `check` name a wrong gradient (`backprop_ninja/diagnose.py`, "
              "copied into the notebook's `diagnoses` cell by `assign`). The shape classes apply when the shape "
              "differs; otherwise the first class that fits wins, in this order.", "", "| class | meaning |", "|---|---|"]
    lines += [f"| `{kind}` | {meaning} |" for kind, meaning in diagnose.MISTAKES.items()]
    lines += ["", "## Hints: the local derivative of each use", "",
              "The second rung of the hint ladder, written beside each share in the table: for every "
              "line that uses the variable, its local derivative in words and in math. *Broadcast* marks "
              "a use that stretched the variable along some dimensions, so its share sums over them. "
              "Shapes are as the student sees them, n being the batch size."]
    for u in units.UNITS:
        shape = f", shape `{u.shape}`" if u.shape else ""
        lines += ["", f"### `{u.grade_id}`: `{u.answer}`{shape}", ""]
        for consumer, hint in u.hints.items():
            where = f"used by `{consumer}`" if consumer else "in general"
            stretched = f" (broadcast: sum over {u.broadcast[consumer]})" if consumer in u.broadcast else ""
            lines.append(f"- {where}{stretched}: {hint}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    DOC.write_text(render())
    print("wrote", DOC.relative_to(REPO))
