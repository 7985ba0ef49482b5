"""When each student handed in, for the batch: a CSV of submission times (from the course platform), or else the
timestamp.txt that nbgrader's exchange writes beside a submission (submitted/<student>/backprop_ninja/).

The CSV is the instructor's file: a bad line stops the batch before anything is graded, naming the file and the line.
timestamp.txt is in the student's folder: an unreadable one only leaves that student's submission time unknown.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from pathlib import Path

from backprop_ninja.csv_input import CsvUnreadable, read_rows
from backprop_ninja.lateness.times import TimeFormatError, parse_time

TIMESTAMP_NAME = "timestamp.txt"
TIMES_COLUMNS = ("student_id", "submitted_at")
MAX_TIMESTAMP_BYTES = 256  # nbgrader writes about 30; more is not a timestamp


class SubmissionTimesError(ValueError):
    """The CSV of submission times cannot be used; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class SubmissionTime:
    at: datetime | None       # aware UTC; None when unknown
    problem: str = ""         # why it is unknown (shown in the student's row)


def read_times_csv(path: Path, zone: tzinfo) -> dict[str, datetime]:
    """student_id -> submission time from a CSV with the columns student_id,submitted_at (more columns may follow).
    A time without a zone is in `zone` (c.Lateness.timezone)."""
    path = Path(path)
    try:
        rows = read_rows(path)
    except CsvUnreadable as why:
        raise SubmissionTimesError(f"{why}; give the CSV of submission times with --submission-times.") from None
    header = [cell.strip() for cell in rows[0]] if rows else []
    if not set(TIMES_COLUMNS) <= set(header):
        raise SubmissionTimesError(f"{path} line 1: the header must name the columns {','.join(TIMES_COLUMNS)}.")
    student_col, time_col = (header.index(name) for name in TIMES_COLUMNS)
    times: dict[str, datetime] = {}
    lines: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(student_col, time_col) or not row[student_col].strip():
            raise SubmissionTimesError(f"{path} line {line}: expected a student id and a submission time.")
        student = row[student_col].strip()
        if student in times:
            raise SubmissionTimesError(f"{path} line {line}: {student} already has a submission time on line "
                                       f"{lines[student]}; keep one row per student (the submission being graded).")
        try:
            times[student] = parse_time(row[time_col], zone)
        except TimeFormatError as error:
            raise SubmissionTimesError(f"{path} line {line}: {error}.") from None
        lines[student] = line
    return times


def timestamp_beside(notebook: Path, assignment: str) -> SubmissionTime:
    """The time in the timestamp.txt beside a notebook of an nbgrader submitted/ tree, read as nbgrader reads it
    (a time without a zone is UTC). Only a regular file of a few bytes is read; a link is never followed."""
    folder = notebook if notebook.name == assignment else notebook.parent
    if folder.name != assignment:
        return SubmissionTime(None)  # a plain folder or zip of notebooks: no exchange wrote a timestamp
    path = folder / TIMESTAMP_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return SubmissionTime(None)
    except OSError as error:
        return SubmissionTime(None, f"{TIMESTAMP_NAME} unreadable ({error.strerror})")
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return SubmissionTime(None, f"{TIMESTAMP_NAME} is not a regular file")
        raw = handle.read(MAX_TIMESTAMP_BYTES + 1)
    if len(raw) > MAX_TIMESTAMP_BYTES:
        return SubmissionTime(None, f"{TIMESTAMP_NAME} is too long to be a time")
    try:
        return SubmissionTime(parse_time(raw.decode("utf-8"), timezone.utc))
    except (UnicodeDecodeError, TimeFormatError):
        return SubmissionTime(None, f"{TIMESTAMP_NAME} does not hold a time")
