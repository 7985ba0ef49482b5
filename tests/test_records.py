"""The trusted side trusts no record (issue 13, item 4a): forged worker records are that unit's error.

The first tests feed forged records to records.graded_record and the frame reader directly; the last ones forge
them from an answer cell, which writes to its worker's socket, and grade the notebook: the unit is an error, the
other units are graded, and the grader neither crashes nor holds the forged bytes.
"""
from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest

from backprop_ninja.grade import engine, records, sandbox
from backprop_ninja.grade.canary import REFERENCE_CELLS
from backprop_ninja.sandboxed import worker
from backprop_ninja.sandboxed.wire import PREFIX, decode_frame, encode_frame
from notebooks import write_submission

ANSWER = {"kind": "answer"}


def answers(count: int, shape=(32, 27)) -> list[np.ndarray]:
    return [np.zeros(shape) for _ in range(count)]


def read(reply, arrays, replays=5, per_answer=1, probe_asked=False):
    return records.graded_record(reply, arrays, replays=replays, per_answer=per_answer, probe_asked=probe_asked)


def test_an_honest_record_comes_back_as_a_clean_copy():
    raised = {"kind": "raised", "type": "ValueError", "where": "your cell", "message": "x" * 1000, "extra": [1]}
    clean, arrays = read({"outcomes": [ANSWER] * 4 + [raised], "pid": 7, "seq": 3}, answers(4))
    assert clean["outcomes"][:4] == [ANSWER] * 4 and len(arrays) == 4
    assert set(clean["outcomes"][4]) == {"kind", "type", "where", "message"}  # nothing else reaches the engine
    assert len(clean["outcomes"][4]["message"]) == records.KINDS["raised"]["message"]


def test_exercise_4_answers_are_seven_arrays_each_and_the_probe_adds_one():
    assert len(read({"outcomes": [ANSWER] * 2}, answers(14), replays=2, per_answer=7)[1]) == 14
    clean, arrays = read({"outcomes": [ANSWER] * 2, "probe": ANSWER}, answers(3), replays=2, probe_asked=True)
    assert clean["probe"] == ANSWER and len(arrays) == 3


@pytest.mark.parametrize("reply, arrays, why", [
    ([ANSWER] * 5, answers(5), "not a mapping"),
    ({"outcomes": {"0": ANSWER}}, answers(5), "outcomes are a dict, not a list"),
    ({"outcomes": "answer"}, answers(5), "outcomes are a str"),
    ({}, [], "outcomes are a NoneType"),
    ({"outcomes": [ANSWER] * 4}, answers(4), "4 outcomes for 5 replays"),
    ({"outcomes": [ANSWER] * 4 + ["answer"]}, answers(5), "an outcome is a str"),
    ({"outcomes": [ANSWER] * 4 + [{"kind": "full_marks"}]}, answers(5), "unknown kind"),
    ({"outcomes": [ANSWER] * 4 + [{"kind": ["answer"]}]}, answers(5), "unknown kind"),
    ({"outcomes": [ANSWER] * 4 + [{"kind": "raised", "message": {"a": 1}}]}, answers(4), "message is a dict"),
    ({"outcomes": [ANSWER] * 4 + [{"kind": "autograd", "call": 12}]}, answers(4), "call is an int"),
    ({"outcomes": [ANSWER] * 5}, answers(6), "6 arrays for 5 answers"),
    ({"outcomes": [ANSWER] * 5}, answers(4), "4 arrays for 5 answers"),
    ({"outcomes": [ANSWER] * 5}, answers(500), "500 arrays for 5 answers"),
    ({"outcomes": [ANSWER] * 5}, "arrays", "no arrays"),
    ({"outcomes": [ANSWER] * 5}, answers(4) + [np.zeros(3, dtype=np.int64)], "dtype int64"),
    ({"outcomes": [ANSWER] * 5}, answers(4) + [[0.0, 1.0]], "dtype list"),
    ({"outcomes": [ANSWER] * 5, "probe": ANSWER}, answers(6), "a probe outcome nobody asked for"),
    ({"outcomes": [ANSWER] * 5, "probe": "answer"}, answers(6), "a probe outcome nobody asked for"),
])
def test_a_forged_record_is_refused_and_says_why(reply, arrays, why):
    with pytest.raises(records.BadRecord) as refused:
        read(reply, arrays)
    assert why in refused.value.message and "this unit earns nothing" in refused.value.message


def test_a_history_record_answers_nothing():
    records.history_record({"outcomes": [], "pid": 7, "seq": 3}, [])  # what an honest worker sends


@pytest.mark.parametrize("reply, arrays, why", [
    ({"outcomes": [ANSWER] * 5}, answers(5), "came back with outcomes"),
    ({"outcomes": {"a": 1}}, [], "came back with outcomes"),
    ({}, [], "came back with outcomes"),
    ([], [], "came back with outcomes"),
    ({"outcomes": [], "probe": ANSWER}, [], "came back with outcomes"),
    ({"outcomes": []}, answers(1), "1 arrays for a history job"),
])
def test_a_history_record_with_anything_in_it_is_refused(reply, arrays, why):
    """A cell re-run as history (before a later exercise) that writes records must not have one of them taken for
    the next job's: the history job itself fails, and its cell is skipped from then on."""
    with pytest.raises(records.BadRecord) as refused:
        records.history_record(reply, arrays)
    assert why in refused.value.message


def test_a_probe_outcome_is_checked_like_the_others():
    with pytest.raises(records.BadRecord, match="an outcome is a str"):
        read({"outcomes": [ANSWER] * 5, "probe": "answer"}, answers(6), probe_asked=True)
    with pytest.raises(records.BadRecord, match="a probe outcome nobody asked for"):  # the cell did not answer
        read({"outcomes": [ANSWER] * 4 + [{"kind": "invalid"}], "probe": ANSWER}, answers(5), probe_asked=True)


def test_an_answer_larger_than_any_gradient_is_refused():
    huge = np.broadcast_to(np.zeros(1), (records.MAX_ANSWER_ELEMENTS + 1,))  # its size, without the memory
    with pytest.raises(records.TooLarge, match="far larger than any gradient"):
        read({"outcomes": [ANSWER]}, [huge], replays=1)
    assert records.MAX_ANSWER_ELEMENTS == worker.MAX_ANSWER_ELEMENTS


def test_the_answers_of_one_submission_share_a_memory_budget():
    budget = records.AnswerBudget()
    eight_mib = np.broadcast_to(np.zeros(1), (1 << 20,))
    for _ in range(7):
        budget.take([eight_mib])  # 56 MiB: still within 64
    with pytest.raises(records.TooLarge, match="far larger than any gradient") as refused:
        budget.take([eight_mib, eight_mib])
    assert "64 MiB" in refused.value.message and budget.used == 56 << 20 and budget.left == 8 << 20


# ---- the frame reader ----

def test_a_frame_over_what_is_left_of_the_budget_is_refused_from_its_prefix():
    grader, cell = socket.socketpair()
    with grader, cell:
        cell.sendall(PREFIX.pack(20, 256 << 20))  # 256 MiB announced; nothing of it sent
        reader = sandbox.FrameReader(grader)
        reader.max_payload = 64 << 20
        with pytest.raises(records.TooLarge, match="256.0 MiB"):
            reader.read(time.monotonic() + 5)
        assert len(reader.buffer) == PREFIX.size  # it did not wait for, nor keep, the payload


@pytest.mark.parametrize("head, why", [
    (b"[" * 200_000 + b"]" * 200_000, "nesting far too deep for the parser"),
    (json.dumps({"arrays": [{"dtype": "float64", "shape": [2 ** 70, 0]}]}).encode(), "a dimension past int64"),
    (json.dumps({"arrays": [{"dtype": "float64", "shape": [1] * 40}]}).encode(), "more dimensions than numpy's"),
    (json.dumps({"arrays": [{"dtype": "float64", "shape": [True]}]}).encode(), "a boolean as a dimension"),
    (b'{"arrays": [], "seq": ' + b"9" * 5000 + b"}", "an integer past Python's digit limit"),
])
def test_a_header_that_would_crash_the_parser_is_not_a_record(head, why):
    with pytest.raises(ValueError):
        decode_frame(head, b"")


def test_a_record_for_job_true_is_not_job_1():
    grader, cell = socket.socketpair()
    with grader, cell:
        box = sandbox.Box(socket.socket())
        w = sandbox.Worker(5, grader, box)
        cell.sendall(encode_frame({"pid": 5, "seq": True, "outcomes": "forged"}))
        cell.sendall(encode_frame({"pid": 5, "seq": 1, "outcomes": []}))
        reply, _ = w.request({}, [], time.monotonic() + 5)
        assert reply["outcomes"] == []
        box.control.close()


# ---- forged from an answer cell, graded for real ----

# The cell finds its socket among its descriptors and writes a record for every job number a worker may be at.
FORGER = '''
import json, os, socket, struct
def forge(header, payload_bytes=0):
    for fd in range(3, 64):
        try:
            sock = socket.socket(fileno=fd)
        except OSError:
            continue
        try:
            for seq in range(1, 120):
                head = json.dumps(dict(header, pid=os.getpid(), seq=seq)).encode()
                sock.sendall(struct.pack(">II", len(head), payload_bytes) + head)
        finally:
            sock.detach()
forge(%s, %d)
'''


def grade_with_forger(tmp_path, forged_header: dict, payload_bytes: int = 0):
    answers = dict(REFERENCE_CELLS)
    answers["ex1_h"] = FORGER % (repr(forged_header), payload_bytes)
    notebook = write_submission(tmp_path / "forger.ipynb", answers)
    result = engine.grade_notebook(notebook, code="any")
    return {v.unit: v for v in result.verdicts}


def test_a_cell_that_forges_outcomes_that_are_not_a_list_gets_an_error_not_a_crash(tmp_path, names_file):
    verdicts = grade_with_forger(tmp_path, {"outcomes": {"a": 1}, "arrays": []})
    assert verdicts["ex1_h"].status == "error" and verdicts["ex1_h"].points == 0
    assert "record the grader cannot use" in verdicts["ex1_h"].message
    others = [v for unit, v in verdicts.items() if unit != "ex1_h"]
    assert all(v.status == "ok" for v in others), [v for v in others if v.status != "ok"][0]


def test_a_cell_that_announces_a_huge_answer_is_refused_before_it_is_read(tmp_path, names_file):
    forged = {"outcomes": [{"kind": "answer"}], "arrays": [{"dtype": "float64", "shape": [32 << 20]}]}
    verdicts = grade_with_forger(tmp_path, forged, payload_bytes=256 << 20)
    assert verdicts["ex1_h"].status == "error"
    assert "far larger than any gradient" in verdicts["ex1_h"].message
    assert verdicts["ex2_logits"].status == "ok" and verdicts["ex1_W2"].status == "ok"
