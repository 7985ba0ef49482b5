"""Results on disk: each student's results.json with our record inside, and grades.csv; written atomically."""
from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
from pathlib import Path

from backprop_ninja.batch.submission import Submission
from backprop_ninja.export.csv_export import grades_table
from backprop_ninja.export.safe_text import csv_rows
from backprop_ninja.lateness.columns import LateBook, add_late_columns

RESULTS_NAME = "results.json"
CSV_NAME = "grades.csv"
RECORD_KEY = "backprop_ninja"          # results.json["extra_data"][RECORD_KEY] holds our record


def write_text_atomically(path: Path, text: str) -> None:
    """Temp file in the same folder, fsync, os.replace: a reader sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as temp:
            temp.write(text)
            os.fchmod(temp.fileno(), 0o644)  # mkstemp makes 0600; results are for the whole course staff
            temp.flush()
            os.fsync(temp.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def write_json_atomically(path: Path, data: dict) -> None:
    write_text_atomically(path, readable_json(data))


def readable_json(data) -> str:
    """JSON with one line per top-level entry and per item of a top-level list (a results.json: one line per test),
    each line made by json's C encoder: `indent=` would send every file through json's pure-Python encoder, which
    cost the batch's main process a few ms per submission."""
    if not isinstance(data, dict) or not data:
        return json.dumps(data) + "\n"
    entries = []
    for key, value in data.items():
        if isinstance(value, list) and value:
            inner = ",\n  ".join(json.dumps(item) for item in value)
            entries.append(f"{json.dumps(str(key))}: [\n  {inner}\n ]")
        else:
            entries.append(f"{json.dumps(str(key))}: {json.dumps(value)}")
    return "{\n " + ",\n ".join(entries) + "\n}\n"


def read_record(results_file: Path) -> dict | None:
    """Our record inside a results.json, or None if the file is absent, damaged or not ours."""
    try:
        data = json.loads(results_file.read_text(encoding="utf-8"))
        record = data["extra_data"][RECORD_KEY]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record if isinstance(record, dict) else None


def make_record(sub: Submission, key: str, version: str, content_hash: str, run_id: str,
                result: dict, units: list) -> dict:
    """What we keep beside Gradescope's fields: enough to resume, and to build the CSV and the report."""
    verdicts = [{k: v for k, v in verdict.items() if k != "mismatch"} for verdict in result["verdicts"]]
    return {
        "student_id": sub.student_id, "source": sub.source, "submission_sha256": content_hash,
        "grader_version": version, "key": key, "run_id": run_id, "error": result.get("error"),
        "execution_time": result.get("execution_time", 0.0), "isolation": result.get("isolation", ""),
        "rules": result.get("rules", ""), "shape": result.get("shape", ""), "code": result.get("code", ""),
        "fault": result.get("fault") or "",  # "environment": the machine's fault, graded again by the next run
        "verdicts": verdicts,
        "units": [list(u) for u in units],
    }


def write_grades_csv(out_dir: Path, subs: list[Submission], *, lateness: LateBook | None = None) -> Path:
    """One row per student, from the records (see export/csv_export.py for the columns), then the lateness columns
    (lateness/columns.py; empty without `lateness`); every cell made safe for a spreadsheet (export/safe_text.py),
    since file names and messages come from students."""
    entries = [(s.student_id, s.source, read_record(out_dir / s.student_id / RESULTS_NAME)) for s in subs]
    rows, unknown = add_late_columns(grades_table(entries), {s.student_id: s.path for s in subs}, lateness)
    if unknown:
        print(f"batch: {unknown} of {len(subs)} submissions have no known submission time, so no late penalty; "
              f"give a CSV of times with --submission-times (their late_by column says why).", file=sys.stderr)
    buffer = io.StringIO()
    csv.writer(buffer).writerows(csv_rows(rows))
    path = out_dir / CSV_NAME
    write_text_atomically(path, buffer.getvalue())
    return path
