"""Reading a submission is bounded: the trusted grader process opens only regular files, reads at most a
set number of bytes, and turns deep nesting or oversized answer cells into messages instead of crashes."""
from __future__ import annotations

import json
import os
import socket
import threading

import nbformat
import pytest

from backprop_ninja.grade import extract, limits, static
from backprop_ninja import units
from notebooks import STUB, answer_cell, write_submission

PROBS_ANSWER = "dprobs = dlogprobs / probs"


def _write_cells(path, *cells) -> str:
    path.write_text(nbformat.writes(nbformat.v4.new_notebook(cells=list(cells))), encoding="utf-8")
    return path


def _returns_without_blocking(call):
    """The result of call(); fails (rather than hangs the suite) if it is still blocked after a generous wait."""
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.update(result=call()), daemon=True)
    worker.start()
    worker.join(30)
    assert not worker.is_alive(), "read_answers blocked instead of refusing the file"
    return outcome["result"]


# ---- what the path is ----

def test_a_named_pipe_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "submission.ipynb"
    os.mkfifo(fifo)
    found = _returns_without_blocking(lambda: extract.read_answers(fifo))
    assert found.error == (f"{fifo} is a named pipe, not a notebook file, so the grader does not read it; "
                           f"submit the .ipynb file itself, as saved by Jupyter")
    assert found.answers == {}


def test_a_symbolic_link_is_not_followed_even_to_a_device(tmp_path):
    link = tmp_path / "submission.ipynb"
    link.symlink_to("/dev/zero")
    found = _returns_without_blocking(lambda: extract.read_answers(link))
    assert found.error.startswith(f"{link} is a symbolic link, not a notebook file")


def test_a_symbolic_link_to_a_good_notebook_is_refused_too(tmp_path):
    # Following links would let a submission name any file the grader can read.
    target = write_submission(tmp_path / "real.ipynb", {"ex1_probs": PROBS_ANSWER})
    assert extract.read_answers(target).answers == {"ex1_probs": PROBS_ANSWER}
    link = tmp_path / "submission.ipynb"
    link.symlink_to(target)
    found = extract.read_answers(link)
    assert "is a symbolic link" in found.error and found.answers == {}


def test_a_device_is_never_read():
    found = _returns_without_blocking(lambda: extract.read_answers("/dev/zero"))
    assert found.error.startswith("/dev/zero is a device, not a notebook file")


def test_a_directory_and_a_socket_are_refused_by_name(tmp_path):
    assert extract.read_answers(tmp_path).error.startswith(f"{tmp_path} is a directory, not a notebook file")
    socket_path = tmp_path / "s.ipynb"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(socket_path))
        assert extract.read_answers(socket_path).error.startswith(f"{socket_path} is a socket")


def test_a_missing_file_is_named(tmp_path):
    assert extract.read_answers(tmp_path / "nowhere.ipynb").error == f"{tmp_path / 'nowhere.ipynb'}: no such file"


# ---- how big it is ----

def test_a_notebook_over_the_size_limit_is_refused_with_its_size_and_what_to_do(tmp_path):
    padding = nbformat.v4.new_markdown_cell("x" * (11 << 20))
    path = _write_cells(tmp_path / "big.ipynb", padding, answer_cell("ex1_probs", PROBS_ANSWER))
    found = extract.read_answers(path)
    assert found.error.startswith(f"{path} is 11.0 MiB, over the grader's limit of 10.0 MiB for a notebook")
    assert "clear the outputs" in found.error and found.answers == {}


def test_the_size_limit_is_inclusive(tmp_path):
    path = write_submission(tmp_path / "exact.ipynb", {"ex1_probs": PROBS_ANSWER})
    size = path.stat().st_size
    assert extract.read_answers(path, max_notebook_bytes=size).answers == {"ex1_probs": PROBS_ANSWER}
    refused = extract.read_answers(path, max_notebook_bytes=size - 1)
    assert refused.error.startswith(f"{path} is {size} bytes, over the grader's limit of {size - 1} bytes")


def test_the_default_limits_are_the_documented_ones():
    assert (limits.MAX_NOTEBOOK_BYTES, limits.MAX_CELL_BYTES) == (10 << 20, 1 << 20)


def test_an_oversized_answer_cell_is_a_problem_of_its_unit_only(tmp_path):
    huge = "dprobs = 0\n" + "# padding\n" * ((2 << 20) // 10)  # 2 MiB
    path = write_submission(tmp_path / "cell.ipynb", {"ex1_probs": huge, "ex1_counts": "dcounts = 1"})
    found = extract.read_answers(path)
    assert found.error is None
    assert found.answers == {"ex1_counts": "dcounts = 1"}
    assert "ex1_probs" not in found.stubs
    assert found.problems == {"ex1_probs": (
        "the answer cell ex1_probs is 2.0 MiB, over the grader's limit of 1.0 MiB for one cell, "
        "so it was not run: keep only the code that computes dprobs (no pasted data) and submit again")}


def test_an_oversized_cell_that_is_not_an_answer_is_ignored(tmp_path):
    data = nbformat.v4.new_code_cell("table = " + repr("x" * (2 << 20)))
    path = _write_cells(tmp_path / "data.ipynb", data, answer_cell("ex1_probs", PROBS_ANSWER))
    found = extract.read_answers(path)
    assert found.error is None and found.problems == {}
    assert found.answers == {"ex1_probs": PROBS_ANSWER}


def test_the_last_attempt_decides_between_an_oversized_cell_and_an_answer(tmp_path):
    small_limit = 100
    oversized = answer_cell("ex1_probs", "dprobs = 1  " + "#" * small_limit)
    answer = answer_cell("ex1_probs", PROBS_ANSWER)
    stub = answer_cell("ex1_probs", STUB)

    later_answer = extract.read_answers(_write_cells(tmp_path / "a.ipynb", oversized, answer),
                                        max_cell_bytes=small_limit)
    assert later_answer.answers == {"ex1_probs": PROBS_ANSWER} and later_answer.problems == {}

    later_oversized = extract.read_answers(_write_cells(tmp_path / "b.ipynb", answer, oversized),
                                           max_cell_bytes=small_limit)
    assert later_oversized.answers == {} and set(later_oversized.problems) == {"ex1_probs"}

    # A blank stub left after an attempt does not undo the attempt.
    stub_after = extract.read_answers(_write_cells(tmp_path / "c.ipynb", oversized, stub), max_cell_bytes=small_limit)
    assert stub_after.stubs == set() and set(stub_after.problems) == {"ex1_probs"}


def test_a_cell_size_counts_utf8_bytes_not_characters(tmp_path):
    source = "dprobs = 1  # " + "é" * 60  # 74 characters, 134 bytes
    path = _write_cells(tmp_path / "utf8.ipynb", answer_cell("ex1_probs", source))
    assert set(extract.read_answers(path, max_cell_bytes=100).problems) == {"ex1_probs"}
    assert extract.read_answers(path, max_cell_bytes=134).answers == {"ex1_probs": source}


# ---- what the JSON holds ----

@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000,
                                  '{"cells": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001],
                         ids=["deep list", "deep object"])
def test_deeply_nested_json_is_a_submission_error(tmp_path, text):
    path = tmp_path / "deep.ipynb"
    path.write_text(text)
    assert extract.read_answers(path).error == (f"{path} is not a notebook: its JSON is nested too deeply to read; "
                                                f"submit the .ipynb file itself, as saved by Jupyter")


def test_a_number_too_long_to_convert_is_a_submission_error(tmp_path):
    path = tmp_path / "digits.ipynb"
    path.write_text('{"cells": [], "nbformat": ' + "9" * 5000 + "}")
    error = extract.read_answers(path).error
    assert error.startswith(f"{path} is not a notebook: ") and "digits" in error


DEEP_SOURCES = {
    "parentheses": "dprobs = " + "(" * 200_000 + "1" + ")" * 200_000,
    "unary minus": "dprobs = " + "-" * 1_000_000 + "1",
    "lists": "dprobs = " + "[" * 100_000 + "]" * 100_000,
    "additions": "dprobs = " + "+".join(["1"] * 100_000),
}


@pytest.mark.parametrize("source", DEEP_SOURCES.values(), ids=DEEP_SOURCES.keys())
def test_a_deeply_nested_cell_is_an_answer_that_the_scan_reports(source):
    assert extract.is_blank_stub(source) is False
    found = extract.answers_from_cells([answer_cell("ex1_probs", source)])
    assert found.answers == {"ex1_probs": source}
    finding = static.scan(found.answers["ex1_probs"], units.BY_ID["ex1_probs"])
    assert finding.kind == "syntax" and ("nested" in finding.message)


def test_cells_python_cannot_encode_are_answers_not_crashes(tmp_path):
    # JSON may hold an unpaired surrogate ("\ud800") or a NUL, which ast.parse rejects with ValueError or
    # SyntaxError; both are the student's text, for the scan to report.
    path = tmp_path / "odd.ipynb"
    notebook = json.loads(nbformat.writes(nbformat.v4.new_notebook(cells=[
        answer_cell("ex1_probs", "dprobs = 1"), answer_cell("ex1_counts", "dcounts = 1")])))
    notebook["cells"][0]["source"] = "dprobs = '\ud800'"
    notebook["cells"][1]["source"] = "dcounts = 1\x00"
    path.write_text(json.dumps(notebook))
    found = extract.read_answers(path)
    assert found.answers == {"ex1_probs": "dprobs = '\ud800'", "ex1_counts": "dcounts = 1\x00"}
    for grade_id, source in found.answers.items():
        assert static.scan(source, units.BY_ID[grade_id]).kind == "syntax"


def test_a_path_the_system_cannot_take_is_an_error_not_an_exception():
    assert extract.read_answers("sub\x00mission.ipynb").error == (
        "'sub\\x00mission.ipynb' could not be read: embedded null byte")
