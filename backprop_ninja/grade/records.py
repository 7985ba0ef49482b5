"""The grader's reading of a worker's record: nothing in it is used before it is checked.

A worker runs student code, and that code can write to the worker's socket, so a record may hold anything JSON
can (wire.py parses it, never unpickles it). graded_record turns a graded job's record into a clean copy of what an
honest worker sends: the outcomes as a list of dicts, one per replay, with a known kind and only text fields, cut
to length; the probe's outcome only where one was asked for; and exactly as many float64 arrays as the answers
need, none larger than any gradient. Anything else raises BadRecord, which the engine makes that unit's error.

AnswerBudget caps the answers one submission keeps in the grader's memory (the frame cap alone would let eight
forged 256 MiB answers through); the engine also tells the frame reader what is left of it, so a record that could
never fit is refused from its length prefix, before it is read.
"""
from __future__ import annotations

import numpy as np

ANSWER_BUDGET_BYTES = 64 << 20  # all of one submission's answers; an honest one keeps well under 2 MiB
MAX_ANSWER_ELEMENTS = 1 << 20   # of one answer, as the worker's own limit (sandboxed/worker.py)
# The outcome kinds a worker sends, with their text fields and how much of each the grader keeps.
KINDS: dict[str, dict[str, int]] = {
    "answer": {},
    "raised": {"type": 80, "where": 40, "message": 300},
    "invalid": {"message": 600},
    "autograd": {"call": 80},
}


class BadRecord(Exception):
    """A worker's record the grader will not use; `message` is what the unit's verdict says."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class TooLarge(BadRecord):
    """The answers would take more memory than any gradient could."""


def not_a_record(why: str) -> BadRecord:
    return BadRecord(f"the process running this cell sent back a record the grader cannot use ({why}); only code "
                     f"in the cell can write one like that, so this unit earns nothing")


def too_large(nbytes: int, budget: int) -> TooLarge:
    return TooLarge(f"the answer is far larger than any gradient of the network ({nbytes / 2**20:.1f} MiB, where "
                    f"a whole submission's answers may take {budget / 2**20:.0f} MiB); a gradient has its "
                    f"variable's shape")


class AnswerBudget:
    """The memory one submission's answers may take in the grader, together."""

    def __init__(self, limit: int = ANSWER_BUDGET_BYTES):
        self.limit = limit
        self.used = 0

    @property
    def left(self) -> int:
        return max(self.limit - self.used, 0)

    def take(self, arrays: list[np.ndarray]) -> None:
        nbytes = sum(int(a.nbytes) for a in arrays)
        if nbytes > self.left:
            raise too_large(nbytes, self.limit)
        self.used += nbytes


def graded_record(reply, arrays, *, replays: int, per_answer: int, probe_asked: bool) -> tuple[dict, list]:
    """(the record's clean copy, its answers) for a graded job on `replays` replays whose answers are
    `per_answer` arrays each (7 for Exercise 4); BadRecord if it is not what an honest worker sends."""
    if not isinstance(reply, dict):
        raise not_a_record("not a mapping")
    outcomes = reply.get("outcomes")
    if not isinstance(outcomes, list):
        raise not_a_record(f"its outcomes are {_a(outcomes)}, not a list")
    if len(outcomes) != replays:
        raise not_a_record(f"{len(outcomes)} outcomes for {replays} replays")
    clean = {"outcomes": [outcome(item) for item in outcomes]}
    answered = sum(item["kind"] == "answer" for item in clean["outcomes"])
    if reply.get("probe") is not None:
        if not probe_asked or answered != replays:
            raise not_a_record("a probe outcome nobody asked for")
        clean["probe"] = outcome(reply["probe"])
        answered += clean["probe"]["kind"] == "answer"
    if not isinstance(arrays, list) or len(arrays) != answered * per_answer:
        raise not_a_record(f"{len(arrays) if isinstance(arrays, list) else 'no'} arrays for {answered} answers")
    for array in arrays:
        check_answer_array(array)
    return clean, arrays


def history_record(reply, arrays) -> None:
    """BadRecord unless this is what an honest worker sends for a history job: no outcomes, no answers. (A record
    that a cell forged while it ran as history would otherwise be taken for the next job's.)"""
    if not isinstance(reply, dict) or reply.get("outcomes") != [] or "probe" in reply:
        raise not_a_record("a history job, which answers nothing, came back with outcomes")
    if arrays:
        raise not_a_record(f"{len(arrays)} arrays for a history job, which answers nothing")


def outcome(item) -> dict:
    """One replay's outcome, as a fresh dict holding its kind and its text fields only (cut to length)."""
    if not isinstance(item, dict):
        raise not_a_record(f"an outcome is {_a(item)}")
    kind = item.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        raise not_a_record("an outcome of an unknown kind")
    clean = {"kind": kind}
    for name, limit in KINDS[kind].items():
        value = item.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise not_a_record(f"an outcome's {name} is {_a(value)}, not text")
        clean[name] = value if len(value) <= limit else value[:limit - 1] + "…"
    return clean


def check_answer_array(array) -> None:
    if not isinstance(array, np.ndarray) or array.dtype != np.float64:
        raise not_a_record(f"an answer of dtype {getattr(array, 'dtype', type(array).__name__)}, not float64")
    if array.size > MAX_ANSWER_ELEMENTS:
        raise too_large(int(array.nbytes), ANSWER_BUDGET_BYTES)


def _a(value) -> str:
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"
