"""The course's late policy, set in one place: `c.Lateness.*` in nbgrader_config.py, read by nbgrader (through
lateness/nbgrader_side.py) and by the kit's batch (load_course_file).

    c.Lateness.due = "2026-12-01 23:59"           # the assignment's due date; unset: no late penalties
    c.Lateness.timezone = "Europe/Berlin"          # for dates written without a zone (default UTC)
    c.Lateness.grace_minutes = 15                  # this late costs nothing
    c.Lateness.penalty_per_day = 0.1               # fraction of the maximum points per started day late
    c.Lateness.max_penalty = 0.5                   # the most lateness can cost, as a fraction
    c.Lateness.extensions = {"ada": "2d", "ben": "2026-12-05 12:00"}   # extra time or a personal due date
    c.Lateness.extensions_file = "extensions.csv"  # the same as a CSV: student_id,extension

nbgrader only logs an exception raised while it loads nbgrader_config.py and then runs without the file, so the
values are checked here, when they are used, and every problem names nbgrader_config.py and the setting.
"""
from __future__ import annotations

import ast
import os
import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from traitlets import Dict, Float, TraitError, Unicode
from traitlets.config import Configurable
from traitlets.config.loader import ConfigFileNotFound, PyFileConfigLoader

from backprop_ninja.csv_input import CsvUnreadable, read_rows
from backprop_ninja.lateness import CONFIG_NAME
from backprop_ninja.lateness.rule import Extension, PenaltyPolicy
from backprop_ninja.lateness.times import TimeFormatError, parse_extension, parse_time

EXTENSION_COLUMNS = ("student_id", "extension")


class LatenessConfigError(ValueError):
    """A late-policy setting that cannot be used; the message names the file and the setting and says what to do."""


class Lateness(Configurable):
    """The late-submission policy of the course (docs: README, 'Due dates and late penalties')."""

    due = Unicode("", help="The assignment's due date, e.g. '2026-12-01 23:59'; empty: no late penalties.").tag(
        config=True)
    timezone = Unicode("UTC", help="The timezone of dates written without one (an IANA name).").tag(config=True)
    grace_minutes = Float(0.0, help="Minutes after the due date that cost nothing.").tag(config=True)
    penalty_per_day = Float(0.1, help="Fraction of the maximum points lost per started day late.").tag(config=True)
    max_penalty = Float(1.0, help="The most lateness can cost, as a fraction of the maximum points.").tag(config=True)
    extensions = Dict(help="student id -> extra time ('2d', '36h') or a personal due date.").tag(config=True)
    extensions_file = Unicode("", help="A CSV with the columns student_id,extension (same values as extensions); "
                                       "a relative path is read from the course folder.").tag(config=True)


@dataclass(frozen=True)
class CoursePolicy:
    """The checked settings: what the rule needs for every student."""
    due: datetime
    policy: PenaltyPolicy
    extensions: dict[str, Extension] = field(default_factory=dict)
    zone: zoneinfo.ZoneInfo = zoneinfo.ZoneInfo("UTC")

    def extension_for(self, student_id: str) -> Extension:
        return self.extensions.get(student_id)


def course_policy(config, base_dir: Path, source: str = CONFIG_NAME) -> CoursePolicy | None:
    """The checked policy from a traitlets config (None when no due date is set). Raises LatenessConfigError."""
    try:
        settings = Lateness(config=config)
    except TraitError as error:
        raise LatenessConfigError(f"{source}: a c.Lateness setting has a value of the wrong type ({error}).") from None
    if not settings.due.strip():
        return None
    zone = _zone(settings.timezone, source)
    due = _time(settings.due, zone, source, "c.Lateness.due")
    policy = PenaltyPolicy(
        per_day=_fraction(settings.penalty_per_day, source, "c.Lateness.penalty_per_day"),
        cap=_fraction(settings.max_penalty, source, "c.Lateness.max_penalty"),
        grace_seconds=_grace(settings.grace_minutes, source) * 60,
    )
    extensions = _extensions_from_dict(settings.extensions, zone, source)
    if settings.extensions_file:
        path = Path(os.path.expanduser(settings.extensions_file))
        path = path if path.is_absolute() else Path(base_dir) / path
        for student, (extension, line) in _extensions_from_file(path, zone, source).items():
            if student in extensions:
                raise LatenessConfigError(f"{path} line {line}: {student} also has an extension in "
                                          f"c.Lateness.extensions ({source}); keep one of the two.")
            extensions[student] = extension
    for student, extension in extensions.items():
        if isinstance(extension, datetime) and extension < due:
            raise LatenessConfigError(f"the personal due date of {student} ({extension:%Y-%m-%d %H:%M} UTC) is "
                                      f"before the course's (c.Lateness.due in {source}); check the year and month.")
    return CoursePolicy(due, policy, extensions, zone)


def _zone(name: str, source: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise LatenessConfigError(f"{source}: c.Lateness.timezone = {name!r} is not a timezone; use an IANA name "
                                  f"such as 'UTC' or 'Europe/Berlin'.") from None


def _time(text: str, zone, source: str, setting: str) -> datetime:
    try:
        return parse_time(text, zone)
    except TimeFormatError as error:
        raise LatenessConfigError(f"{source}: {setting}: {error}.") from None


def _fraction(value: float, source: str, setting: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise LatenessConfigError(f"{source}: {setting} = {value!r} is not a fraction of the maximum points; use a "
                                  f"number from 0 to 1 (0.1 for 10 %).")
    return value


def _grace(minutes: float, source: str) -> float:
    if minutes < 0:
        raise LatenessConfigError(f"{source}: c.Lateness.grace_minutes = {minutes!r} is negative; use 0 or more.")
    return minutes


def _extensions_from_dict(raw: dict, zone, source: str) -> dict[str, Extension]:
    extensions = {}
    for student, value in raw.items():
        if isinstance(value, timedelta):
            extensions[str(student)] = value
            continue
        try:
            extensions[str(student)] = parse_extension(value, zone)
        except TimeFormatError as error:
            raise LatenessConfigError(f"{source}: c.Lateness.extensions[{student!r}]: {error}.") from None
    return extensions


def _extensions_from_file(path: Path, zone, source: str) -> dict[str, tuple[Extension, int]]:
    """student -> (extension, line number) from the CSV at `path`."""
    try:
        rows = read_rows(path)
    except CsvUnreadable as why:
        raise LatenessConfigError(f"{source}: c.Lateness.extensions_file: {why}; fix the file or the path (a "
                                  f"relative one is read from the course folder).") from None
    if not rows or tuple(cell.strip() for cell in rows[0][:2]) != EXTENSION_COLUMNS:
        raise LatenessConfigError(f"{path} line 1: the header must be {','.join(EXTENSION_COLUMNS)}.")
    found: dict[str, tuple[Extension, int]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < 2 or not row[0].strip():
            raise LatenessConfigError(f"{path} line {line}: expected a student id and an extension.")
        student = row[0].strip()
        if student in found:
            raise LatenessConfigError(f"{path} line {line}: {student} already has an extension on line "
                                      f"{found[student][1]}; keep one row per student.")
        try:
            found[student] = (parse_extension(row[1], zone), line)
        except TimeFormatError as error:
            raise LatenessConfigError(f"{path} line {line}: {error}.") from None
    return found


def sets_lateness(path: Path) -> bool:
    """Whether the config file assigns any c.Lateness setting, read without running it (a file that sets none
    costs the batch nothing: running nbgrader_config.py imports nbgrader, seconds of start-up)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return True  # let the real load report the problem
    return any(isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
               and node.value.attr == "Lateness" for node in ast.walk(tree))


def load_course_file(path: Path) -> CoursePolicy | None:
    """The policy of the nbgrader_config.py at `path`, run the way nbgrader runs it (traitlets' PyFileConfigLoader).
    The file may change os.environ (the course's does); the batch's own environment is put back afterwards."""
    path = Path(path)
    if not sets_lateness(path):
        return None
    saved_environment = dict(os.environ)
    try:
        config = PyFileConfigLoader(path.name, path=str(path.parent.resolve())).load_config()
    except ConfigFileNotFound:
        raise LatenessConfigError(f"{path} does not exist; give the course's nbgrader_config.py.") from None
    except Exception as error:  # the file is the instructor's Python: any error in it is reported, not raised on
        raise LatenessConfigError(f"{path} failed to load ({type(error).__name__}: {error}); fix it, or give "
                                  f"another file with --course-config.") from None
    finally:
        os.environ.clear()
        os.environ.update(saved_environment)
    return course_policy(config, path.parent.resolve(), source=str(path))
