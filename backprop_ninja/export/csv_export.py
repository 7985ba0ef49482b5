"""grades.csv: one row per student, built from the records the batch keeps in each results.json.

Columns: student_id, source, one column of points per unit (in the units' table order), total, max,
one `<unit>_status` column per unit, `isolation` (how the student's code was confined, as the engine
reports it; empty when nothing of it ran), `rules` (the rule policy, lenient or strict: what an answer right by
luck earned; empty when nothing was graded), `shape` (the shape policy, strict or lenient: whether a gradient
off only by size-1 dimensions earned its points; empty when nothing was graded), `code` (the code policy,
allowlist or any: whether answer cells were held to grade/allowlist.py), and `error` (why the submission as a whole could not be graded,
empty when it was). Light on purpose: no torch, so the batch's main process can write it.
The rows hold the raw values; batch/records.py passes them through export/safe_text.csv_rows when it writes the file,
so that a file name or message from a student is never a formula or a control sequence in a spreadsheet.
"""
from __future__ import annotations

NOT_GRADED_YET = "not graded yet (the batch stopped before this submission; rerun it)"


def unit_columns(records: list[dict | None]) -> list[tuple[str, float]]:
    """(grade_id, max points) in table order, from the first record that knows the units."""
    for record in records:
        if record and record.get("units"):
            return [(grade_id, float(points)) for grade_id, points in record["units"]]
        if record and record.get("verdicts"):
            return [(v["unit"], float(v["max_points"])) for v in record["verdicts"]]
    return []


def grades_table(entries: list[tuple[str, str, dict | None]]) -> list[list]:
    """Rows (header first) for entries of (student_id, source, record or None)."""
    units = unit_columns([record for _, _, record in entries])
    header = (["student_id", "source"] + [grade_id for grade_id, _ in units] + ["total", "max"]
              + [f"{grade_id}_status" for grade_id, _ in units] + ["isolation", "rules", "shape", "code",
                                                                          "error"])
    rows = [header]
    max_total = sum(points for _, points in units)
    for student_id, source, record in entries:
        if record is None:
            rows.append([student_id, source] + [0] * len(units) + [0, _number(max_total)]
                        + [""] * len(units) + ["", "", "", "", NOT_GRADED_YET])
            continue
        by_unit = {v["unit"]: v for v in record.get("verdicts", [])}
        points = [_number(by_unit[g]["points"]) if g in by_unit else 0 for g, _ in units]
        statuses = [by_unit[g]["status"] if g in by_unit else "missing" for g, _ in units]
        total = sum(float(by_unit[g]["points"]) for g, _ in units if g in by_unit)
        rows.append([student_id, source] + points + [_number(total), _number(max_total)] + statuses
                    + [record.get("isolation") or "", record.get("rules") or "", record.get("shape") or "",
                       record.get("code") or "", record.get("error") or ""])
    return rows


def _number(value: float):
    """2.0 -> 2, 0.5 -> 0.5: whole points read as whole numbers in a spreadsheet."""
    value = float(value)
    return int(value) if value.is_integer() else round(value, 4)
