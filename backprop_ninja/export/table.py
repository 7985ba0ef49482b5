"""A SubmissionResult as a plain terminal table: one row per unit, then the total."""
from __future__ import annotations

from backprop_ninja.grade.verdict import SubmissionResult

MESSAGE_WIDTH = 100


def format_table(result: SubmissionResult) -> str:
    rows = [("unit", "status", "points", "message")]
    for verdict in result.verdicts:
        message = verdict.message if len(verdict.message) <= MESSAGE_WIDTH else verdict.message[:MESSAGE_WIDTH - 3] + "..."
        rows.append((verdict.unit, verdict.status, f"{verdict.points:g}/{verdict.max_points:g}", message))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = [f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]}".rstrip() for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.append(f"total: {result.score:g}/{result.max_score:g}  ({result.submission}, {result.execution_time:.1f} s)")
    if result.error:
        lines.append(f"not graded: {result.error}")
    if result.isolation:
        lines.append(f"student code ran isolated: {result.isolation}" if not result.isolation.startswith("none")
                     else f"student code ran WITHOUT isolation: {result.isolation}")
    return "\n".join(lines)
