"""What every part of the batch passes around: a submission found in the input, and the error that stops a batch."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class BatchError(Exception):
    """The batch as a whole cannot run (bad input path, ambiguous ids, the engine will not start)."""


@dataclass(frozen=True)
class Submission:
    student_id: str
    path: Path          # the file the engine reads
    source: str         # where it came from, for people: a path, or "class.zip!alice.ipynb"
    refused: str | None = None  # why it is never given to the grader (a link, a pipe, too big); its row says so
