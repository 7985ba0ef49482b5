"""`backprop-ninja report RESULTS_DIR --out DIR`: what the class got right and wrong, unit by unit.

Reads the records the batch keeps in RESULTS_DIR/<student>/results.json and writes
  matrix.csv    students x units, each cell a class: "ok" or the kind of mistake
  heatmap.png   the same matrix in colour
  report.html   one self-contained page: per-unit pass rate and most common mistakes, the heatmap inlined.
The mistake classes come from each verdict's status and message keywords (MISTAKE_CLASSES below);
nothing new is asked of the engine. No torch here.
"""
from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from backprop_ninja.export.safe_text import csv_rows, terminal_text

OK_CLASS = "ok"
NOT_GRADED_CLASS = "not graded"   # the whole submission could not be graded
# One row per mistake class, tried in order; the first whose status matches and (if it lists any)
# one of whose keywords is in the verdict's message (lower case) wins. Keywords follow the messages
# of grade/compare.py.
MISTAKE_CLASSES = (
    # class          phrase in the report ("41 % <phrase> in dbnvar")     statuses         keywords
    ("near-miss",    "were nearly right, but failed the stress replay",   ("wrong",),      ("nearly right",)),
    ("bessel",       "missed the Bessel factor (n vs n-1)",               ("wrong",),      ("bessel", "n/(n-1)", "(n-1)/n")),
    ("factor",       "are off by a constant factor",                      ("wrong",),      ("off by a factor", "constant factor")),
    ("sign",         "flipped the sign",                                  ("wrong",),      ("sign is flipped",)),
    ("transpose",    "swapped rows and columns",                          ("wrong",),      ("transposed",)),
    ("broadcast",    "forgot to sum over a broadcast axis",               ("wrong",),      ("sum over axis", "summed over axis", "sum should run")),
    ("shape",        "have the right values in the wrong shape",          ("wrong",),      ("keepdim", "reshape", "instead of")),
    ("argmax",       "are wrong at the argmax positions",                 ("wrong",),      ("argmax",)),
    ("branch",       "missed a branch of a variable used twice",          ("wrong",),      ("branch", "path through")),
    ("nan",          "produced NaN or inf",                               ("wrong",),      ("contains nan", "contains inf")),
    ("hard-coded",   "hard-coded the batch size or the notebook's run",   ("wrong",),      ("literal 32", "hard-coded")),
    ("accumulate",   "wrote repeated rows over one another (= or += through an index) instead of adding them up",
     ("wrong",), ("appear more than once",)),
    ("mix-up",       "used a forward value or another gradient instead",  ("wrong",),      ("forward value", "equals the gradient of")),
    ("values",       "have other wrong values",                           ("wrong",),      ()),
    ("missing",      "left it blank",                                     ("missing",),    ()),
    ("error",        "wrote code that raised an error",                   ("error",),      ()),
    ("autograd",     "used autograd",                                     ("uses_autograd",), ()),
    ("not-allowed",  "used code outside what a gradient needs",           ("not_allowed",), ()),
    ("timeout",      "ran out of time",                                   ("timeout",),    ()),
    ("crashed",      "crashed the grader's process",                      ("crashed",),    ()),
    ("luck",         "were right only by luck (strict rule policy)",      ("right_by_luck",), ()),
)
PHRASES = {label: phrase for label, phrase, _, _ in MISTAKE_CLASSES}
PHRASES[NOT_GRADED_CLASS] = "could not be graded at all"
CLASS_ORDER = [OK_CLASS] + [label for label, *_ in MISTAKE_CLASSES] + [NOT_GRADED_CLASS]
TOP_MISTAKES = 3


def mistake_class(status: str, message: str) -> str:
    """The class of one verdict: "ok", a mistake label from MISTAKE_CLASSES, or "other"."""
    if status == "ok":
        return OK_CLASS
    text = (message or "").lower()
    for label, _, statuses, keywords in MISTAKE_CLASSES:
        if status in statuses and (not keywords or any(k in text for k in keywords)):
            return label
    return "other"


def answer_name(grade_id: str) -> str:
    """ex1_bnvar -> dbnvar; ex2_logits -> dlogits (Exercise 2); ex4_backward -> manual_backward (Exercise 4)."""
    match = re.fullmatch(r"ex(\d+)_(\w+)", grade_id)
    if not match:
        return grade_id
    exercise, var = match.groups()
    name = "manual_backward" if var == "backward" else f"d{var}"
    return name if exercise == "1" else f"{name} (Exercise {exercise})"


@dataclass
class Cohort:
    students: list[str]
    units: list[str]                      # grade_ids in table order
    classes: dict[str, list[str]]         # student -> class per unit
    scores: dict[str, float]
    max_score: float


def load_cohort(results_dir: Path) -> Cohort:
    """Every student folder of a batch output that has our record in its results.json."""
    records = {}
    for results_file in sorted(Path(results_dir).glob("*/results.json")):
        try:
            record = json.loads(results_file.read_text(encoding="utf-8"))["extra_data"]["backprop_ninja"]
        except (OSError, ValueError, KeyError, TypeError):
            print(f"report: skipping {terminal_text(results_file)}: not a results.json written by "
                  f"`backprop-ninja grade`", file=sys.stderr)
            continue
        records[record.get("student_id") or results_file.parent.name] = record
    if not records:
        raise FileNotFoundError(
            f"No graded results in {results_dir}: expected <student>/results.json files written by "
            f"`backprop-ninja grade FOLDER --out {results_dir}`.")
    units = _units(records.values())
    classes, scores = {}, {}
    for student, record in records.items():
        by_unit = {v["unit"]: v for v in record.get("verdicts", [])}
        if record.get("error"):
            classes[student] = [NOT_GRADED_CLASS] * len(units)
        else:
            classes[student] = [mistake_class(by_unit[u]["status"], by_unit[u]["message"]) if u in by_unit
                                else "missing" for u in units]
        scores[student] = sum(float(v["points"]) for v in by_unit.values())
    max_score = sum(float(p) for _, p in _unit_points(records.values()))
    return Cohort(sorted(records), units, classes, scores, max_score)


def _unit_points(records) -> list[tuple[str, float]]:
    for record in records:
        if record.get("units"):
            return [(u, float(p)) for u, p in record["units"]]
        if record.get("verdicts"):
            return [(v["unit"], float(v["max_points"])) for v in record["verdicts"]]
    return []


def _units(records) -> list[str]:
    return [u for u, _ in _unit_points(list(records))]


# ---------------------------------------------------------------- the three outputs

def write_matrix_csv(cohort: Cohort, path: Path) -> None:
    """Students x units; every cell made safe for a spreadsheet, since student ids come from file names."""
    rows = [["student_id"] + cohort.units] + [[student] + cohort.classes[student] for student in cohort.students]
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(csv_rows(rows))


def unit_summaries(cohort: Cohort) -> list[dict]:
    """Per unit: pass rate, and the most common mistakes as (count, percent, class)."""
    n = len(cohort.students)
    summaries = []
    for index, unit in enumerate(cohort.units):
        counts = Counter(cohort.classes[s][index] for s in cohort.students)
        mistakes = [(count, 100.0 * count / n, label) for label, count in counts.most_common()
                    if label != OK_CLASS][:TOP_MISTAKES]
        summaries.append({"unit": unit, "name": answer_name(unit), "passed": counts[OK_CLASS],
                          "pass_rate": 100.0 * counts[OK_CLASS] / n, "mistakes": mistakes})
    return summaries


def mistake_sentence(percent: float, label: str, unit: str) -> str:
    return f"{percent:.0f} % {PHRASES.get(label, label)} in {answer_name(unit)}"


def heatmap_png(cohort: Cohort) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    present = [c for c in CLASS_ORDER + ["other"] if any(c in row for row in cohort.classes.values())]
    index = {label: i for i, label in enumerate(present)}
    palette = {OK_CLASS: "#2e9d4c", "missing": "#d0d0d0", NOT_GRADED_CLASS: "#202020"}
    # Mistakes get tab20's colours except its greens and greys, which would read as "ok" and "missing".
    others = [c for c in plt.get_cmap("tab20").colors
              if not (c[1] > c[0] + 0.15 and c[1] > c[2] + 0.15) and max(c) - min(c) > 0.1]
    colours = [palette.get(label, others[i % len(others)]) for i, label in enumerate(present)]
    grid = [[index[c] for c in cohort.classes[s]] for s in cohort.students]

    n_students, n_units = len(cohort.students), len(cohort.units)
    height = min(2.5 + 0.22 * n_students, 24)
    fig, ax = plt.subplots(figsize=(3.5 + 0.32 * n_units, height), dpi=90)
    ax.imshow(grid, aspect="auto", interpolation="nearest", cmap=ListedColormap(colours),
              vmin=-0.5, vmax=len(present) - 0.5)
    ax.set_xticks(range(n_units), [answer_name(u).split(" ")[0] for u in cohort.units], rotation=90,
                  fontsize=8)
    if n_students <= 80:
        ax.set_yticks(range(n_students), cohort.students, fontsize=7)
    else:
        ax.set_yticks([])
        ax.set_ylabel(f"{n_students} students")
    ax.legend(handles=[Patch(color=colours[i], label=label) for i, label in enumerate(present)],
              loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8, frameon=False)
    ax.set_title("Each student's result per unit")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.rate { white-space: nowrap; font-variant-numeric: tabular-nums; }
.bar { display: inline-block; height: 0.8em; background: #2e9d4c; margin-right: 6px; }
ul { margin: 0; padding-left: 1.2em; }
img { max-width: 100%; }
"""


def render_html(cohort: Cohort, png: bytes) -> str:
    esc = html.escape
    n = len(cohort.students)
    not_graded = sum(1 for s in cohort.students if cohort.classes[s] and cohort.classes[s][0] == NOT_GRADED_CLASS)
    mean = sum(cohort.scores.values()) / n
    rows = []
    for summary in unit_summaries(cohort):
        mistakes = "".join(f"<li>{esc(mistake_sentence(pct, label, summary['unit']))} ({count})</li>"
                           for count, pct, label in summary["mistakes"]) or "<li>none</li>"
        rows.append(
            f"<tr><td><code>{esc(summary['unit'])}</code></td><td>{esc(summary['name'])}</td>"
            f"<td class=rate><span class=bar style='width:{summary['pass_rate']:.0f}px'></span>"
            f"{summary['pass_rate']:.0f} % ({summary['passed']}/{n})</td><td><ul>{mistakes}</ul></td></tr>")
    image = base64.b64encode(png).decode("ascii")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Backprop Ninja: cohort report</title>
<style>{_CSS}</style></head><body>
<h1>Backprop Ninja: cohort report</h1>
<p id="summary">{n} students, {n - not_graded} graded, {not_graded} could not be graded;
mean score {mean:.1f} of {cohort.max_score:g}.</p>
<h2>Per unit</h2>
<table id="units"><thead><tr><th>unit</th><th>answer</th><th>pass rate</th><th>most common mistakes</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<h2>Every student, every unit</h2>
<img alt="heatmap of each student's result per unit" src="data:image/png;base64,{image}">
<p>Classes come from each verdict's status and message; see docs/batch.md for the table.</p>
</body></html>
"""


def write_report(results_dir: Path, out_dir: Path) -> dict[str, Path]:
    cohort = load_cohort(results_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"matrix": out_dir / "matrix.csv", "heatmap": out_dir / "heatmap.png", "html": out_dir / "report.html"}
    write_matrix_csv(cohort, paths["matrix"])
    png = heatmap_png(cohort)
    paths["heatmap"].write_bytes(png)
    paths["html"].write_text(render_html(cohort, png), encoding="utf-8")
    return paths


# ---------------------------------------------------------------- the `backprop-ninja report` verb

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results_dir", type=Path, metavar="RESULTS_DIR",
                        help="the --out folder of `backprop-ninja grade FOLDER|ZIP`")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="where to write matrix.csv, heatmap.png and report.html")


def run(args: argparse.Namespace) -> int:
    try:
        paths = write_report(args.results_dir, args.out)
    except FileNotFoundError as error:
        print(f"report: {terminal_text(error)}", file=sys.stderr)
        return 1
    print("wrote " + ", ".join(terminal_text(p) for p in paths.values()))
    return 0
