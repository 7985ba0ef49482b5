"""Text from submissions made safe to show: in a CSV cell (no formula) and in a terminal (no escape sequence).

File names, zip-entry names and error messages come from students, so they can hold a spreadsheet formula
(`=HYPERLINK(...)`, `+C2`, `-1+1`) or terminal control sequences (ESC [ ... colours, cursor moves, title changes,
a carriage return that overwrites the line). Both readers get the same treatment of control characters:

- tab, newline, carriage return, vertical tab and form feed become a space (a newline stays in terminal text,
  where messages are split into lines on purpose);
- every other C0 or C1 control character, DEL, and the Unicode bidirectional overrides (which can make one name
  read as another) become their printable escape, `\\x1b` or `\\u202e`, so that nothing is interpreted and the
  instructor can still tell which file it was.

A CSV cell that then starts with `=`, `+`, `-` or `@` (after any spaces), or that started with a tab or a carriage
return, gets a leading single quote (the OWASP rule for CSV injection). Only strings are touched: a number
stays a number, so -1.5 in a numeric column is still -1.5. Light on purpose: no torch, no third-party import.
"""
from __future__ import annotations

import re

_SPACE_LIKE = "\t\n\r\v\f"
_BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
# C0 and C1 controls and DEL, minus the ones that become a space, plus the bidirectional controls.
_SHOWN_AS_ESCAPE = re.compile("[" + "".join(
    re.escape(chr(code)) for code in [*range(0x00, 0x20), *range(0x7f, 0xa0)] if chr(code) not in _SPACE_LIKE
) + _BIDI_CONTROLS + "]")
_FORMULA_STARTS = ("=", "+", "-", "@")
_STARTS_HIDDEN = ("\t", "\r")


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """`text` with no control character left: whitespace controls become spaces, the others their escape."""
    spaces = _SPACE_LIKE.replace("\n", "") if keep_newlines else _SPACE_LIKE
    text = text.translate({ord(c): " " for c in spaces})
    return _SHOWN_AS_ESCAPE.sub(_escape, text)


def terminal_text(value) -> str:
    """`value` as text that a terminal shows as it is; newlines are kept (callers split lines on them)."""
    return printable(str(value), keep_newlines=True)


def csv_cell(value):
    """`value` safe as a CSV cell: strings cleaned and neutralised, numbers (and None) as they are."""
    if not isinstance(value, str):
        return value
    cleaned = printable(value)
    if value.startswith(_STARTS_HIDDEN) or cleaned.lstrip(" ").startswith(_FORMULA_STARTS):
        return "'" + cleaned
    return cleaned


def csv_rows(rows):
    """Every cell of every row through csv_cell: what the kit hands to csv.writer."""
    return [[csv_cell(value) for value in row] for row in rows]
