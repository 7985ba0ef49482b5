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
    lines += ["", "## Hints: the rule and the local derivative of each use", "",
              "The first two rungs of the hint ladder, written beside each share in the table. The first rung "
              "names, for every line that uses the variable, the kind of rule it calls for (*rule*, one of "
              "`units.RULES`; Exercises 2 to 4 have an overview instead); *broadcast* marks a use that stretched "
              "the variable along some dimensions, so its share sums over them. The second rung is that line's "
              "local derivative in words and in math, never the answer. Shapes are as the student sees them, n "
              "being the batch size."]
    for u in units.UNITS:
        shape = f", shape `{u.shape}`" if u.shape else ""
        lines += ["", f"### `{u.grade_id}`: `{u.answer}`{shape}", ""]
        if u.overview:
            lines.append(f"- overview: {u.overview}")
        for consumer, hint in u.hints.items():
            where = f"used by `{consumer}`" if consumer else "in general"
            rule = f"rule: {u.rule_kinds[consumer]}" if consumer in u.rule_kinds else ""
            notes = [note for note in (rule, f"broadcast: sum over {u.broadcast.get(consumer)}"
                                       if consumer in u.broadcast else "") if note]
            lines.append(f"- {where}" + (f" ({'; '.join(notes)})" if notes else "") + f": {hint}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    DOC.write_text(render())
    print("wrote", DOC.relative_to(REPO))
