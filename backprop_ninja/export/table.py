"""A SubmissionResult as a plain terminal table: one row per unit, then the total.

A message longer than MESSAGE_WIDTH is wrapped, never cut: its further lines are indented under the message column.
Every cell, the file name and the error go through terminal_text first: they can hold a student's file name or the
text of an exception the student's code raised, and no escape sequence of theirs reaches the instructor's terminal.
"""
from __future__ import annotations

import textwrap

from backprop_ninja.export.safe_text import terminal_text
from backprop_ninja.grade.verdict import ANY_CODE, LENIENT_SHAPE, STRICT_RULES, SubmissionResult

MESSAGE_WIDTH = 100


def wrap_message(message: str, width: int = MESSAGE_WIDTH) -> list[str]:
    """The message as lines of at most `width` characters, every word kept (a word longer than a line is split)."""
    lines = []
    for paragraph in message.splitlines() or [""]:
        lines.extend(textwrap.wrap(paragraph, width, break_on_hyphens=False) or [""])
    return lines


def format_table(result: SubmissionResult) -> str:
    rows = [("unit", "status", "points", "message")]
    for verdict in result.verdicts:
        rows.append((terminal_text(verdict.unit), terminal_text(verdict.status),
                     f"{verdict.points:g}/{verdict.max_points:g}", terminal_text(verdict.message)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    indent = " " * (sum(widths) + 3 * 2)  # where the message column starts
    lines = []
    for row in rows:
        first, *more = wrap_message(row[3])
        lines.append(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {first}".rstrip())
        lines.extend((indent + line).rstrip() for line in more)
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"total: {result.score:g}/{result.max_score:g}  ({terminal_text(result.submission)}, "
                 f"{result.execution_time:.1f} s)")
    if result.error:
        lines.append(f"not graded: {terminal_text(result.error)}")
    if result.rules == STRICT_RULES:
        lines.append("strict rule policy: answers right by luck earn no points")
    if result.shape == LENIENT_SHAPE:
        lines.append("lenient shape policy: intermediates' gradients off only by size-1 dimensions earn their points")
    if result.code == ANY_CODE:
        lines.append("any-code policy: answer cells were not held to the allowlist")
    if result.isolation:
        lines.append(f"student code ran isolated: {result.isolation}" if not result.isolation.startswith("none")
                     else f"student code ran WITHOUT isolation: {result.isolation}")
    return "\n".join(lines)
