"""Reading and writing the times of the late rule: dates with or without a timezone, durations such as `1d 12h`.

Dates are read the way nbgrader reads them (its `parse_utc`): an ISO date, or `2026-12-01 23:59:00 Europe/Berlin`
with a zone name or offset as the last word. A date without a zone is taken in the zone the caller gives (the
course's `c.Lateness.timezone` for the instructor's own dates, UTC for nbgrader's timestamp.txt, as nbgrader does).
Every result is a timezone-aware datetime in UTC.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo

import dateutil.parser
import dateutil.tz

_UNIT_SECONDS = {"d": 86400, "day": 86400, "days": 86400, "h": 3600, "hour": 3600, "hours": 3600,
                 "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60}
_DURATION_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*,?", re.IGNORECASE)
DURATION_EXAMPLES = "48h, 2d, 1d 12h, 90 min"
DATE_EXAMPLE = "2026-12-01 23:59"


class TimeFormatError(ValueError):
    """A date or a duration that cannot be read; the message says what was expected."""


def parse_time(text: str, zone: tzinfo) -> datetime:
    """`text` as an aware UTC datetime; a date without a zone is in `zone`."""
    text = str(text).strip()
    if not text:
        raise TimeFormatError(f"an empty date; write one such as {DATE_EXAMPLE}")
    try:
        parts = text.split(" ")
        if len(parts) == 3 and re.fullmatch(r"[A-Za-z][A-Za-z_/+-]*", parts[2]):  # nbgrader's "date time ZONE"
            named = dateutil.tz.gettz(parts[2])
            if named is None:
                raise TimeFormatError(f"{text!r}: unknown timezone {parts[2]!r} (use e.g. UTC or Europe/Berlin)")
            moment = _full_date(" ".join(parts[:2])).replace(tzinfo=named)
        else:
            moment = _full_date(text)
    except (ValueError, OverflowError, TypeError) as error:
        if isinstance(error, TimeFormatError):
            raise
        raise TimeFormatError(f"{text!r} is not a date; write one such as {DATE_EXAMPLE}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(timezone.utc)


def _full_date(text: str) -> datetime:
    """dateutil fills a missing year, month or day from today ('5' is the 5th of this month): parse with two
    different defaults and refuse a text whose date then differs."""
    first = dateutil.parser.parse(text, default=datetime(2000, 1, 1))
    second = dateutil.parser.parse(text, default=datetime(2001, 2, 2))
    if first.date() != second.date():
        raise TimeFormatError(f"{text!r} is not a whole date (year, month and day); write one such as {DATE_EXAMPLE}")
    return first


def parse_duration(text: str) -> timedelta:
    """`1d 12h`, `48h`, `90 min` as a timedelta (at least one part, every part a number and a unit)."""
    text = str(text).strip()
    position, seconds = 0, 0.0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        unit = match and _UNIT_SECONDS.get(match.group(2).lower())
        if not unit:
            raise TimeFormatError(f"{text!r} is not a duration; write one such as {DURATION_EXAMPLES}")
        seconds += float(match.group(1)) * unit
        position = match.end()
    if position == 0:
        raise TimeFormatError(f"an empty duration; write one such as {DURATION_EXAMPLES}")
    return timedelta(seconds=seconds)


def parse_extension(text: str, zone: tzinfo) -> timedelta | datetime:
    """An extension: extra time (a duration) or a personal due date."""
    try:
        return parse_duration(text)
    except TimeFormatError:
        pass
    try:
        return parse_time(text, zone)
    except TimeFormatError:
        raise TimeFormatError(f"{str(text).strip()!r} is neither extra time (such as {DURATION_EXAMPLES}) nor a "
                              f"personal due date (such as {DATE_EXAMPLE})") from None


def readable_duration(seconds: float) -> str:
    """122400 -> '1 d 10 h 0 min'; whole minutes, rounded up so that a late submission never reads as 0 min."""
    minutes = -(-int(seconds) // 60)
    days, minutes = divmod(minutes, 1440)
    hours, minutes = divmod(minutes, 60)
    return f"{days} d {hours} h {minutes} min" if days else f"{hours} h {minutes} min" if hours else f"{minutes} min"


def iso_utc(moment: datetime) -> str:
    """'2026-12-01T22:59:00Z': one unambiguous form for every time the kit writes."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
