"""The hidden pytest suite (autograder/) run as a grader would run it: in a subprocess, on a notebook.

The blank release must fail every unit's test and a full solution pass them all: on this front end
too, the blank release scores 0 and the solution full marks.
"""
from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

from backprop_ninja import units
from backprop_ninja.assign import REPO, notebook_path
from backprop_ninja.examples import EXAMPLES, EXPECTED_LOST

SUMMARY = re.compile(r"(\d+) (passed|failed|error|errors)\b")


def run_suite(notebook: Path, junit: Path, *extra: str) -> tuple[dict[str, int], dict[str, str], str]:
    """(counts from pytest's summary line, test id -> failure message or "" if passed, the output)."""
    command = [sys.executable, "-m", "pytest", str(REPO / "autograder"), "--submission", str(notebook),
               "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *extra]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    counts = {kind.rstrip("s"): int(number) for number, kind in SUMMARY.findall(summary)}
    outcomes = {}
    for case in ElementTree.parse(junit).getroot().iter("testcase"):
        failure = case.find("failure")
        outcomes[case.get("name")] = "" if failure is None else failure.get("message", "")
    return counts, outcomes, proc.stdout + proc.stderr


def expected_ids() -> set[str]:
    return {f"test_unit[{u.grade_id}]" for u in units.UNITS}


def test_blank_release_fails_every_unit(tmp_path, names_file):
    counts, outcomes, output = run_suite(notebook_path(REPO, "release"), tmp_path / "blank.xml")
    assert counts == {"failed": len(units.UNITS)}, output
    assert set(outcomes) == expected_ids() and all(outcomes.values()), output
    assert all("missing" in outcomes[f"test_unit[{u.grade_id}]"] for u in units.EXERCISE_1), output


def test_full_solution_passes_every_unit(tmp_path, names_file):
    counts, outcomes, output = run_suite(EXAMPLES / "ada" / "backprop_ninja" / "backprop_ninja.ipynb",
                                         tmp_path / "ada.xml")
    assert counts == {"passed": len(units.UNITS)}, output
    assert set(outcomes) == expected_ids() and not any(outcomes.values()), output


def test_each_failure_carries_its_verdict_message(tmp_path, names_file):
    counts, outcomes, output = run_suite(EXAMPLES / "ben" / "backprop_ninja" / "backprop_ninja.ipynb",
                                         tmp_path / "ben.xml", "--unit-timeout", "5")
    failed = {name for name, message in outcomes.items() if message}
    assert failed == {f"test_unit[{gid}]" for gid in EXPECTED_LOST}, output
    assert counts == {"passed": len(units.UNITS) - len(EXPECTED_LOST), "failed": len(EXPECTED_LOST)}, output
    assert "keepdim" in outcomes["test_unit[ex1_bnbias]"] and "transposed" in outcomes["test_unit[ex1_W2]"]


def test_the_suite_refuses_to_run_without_a_submission(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pytest", str(REPO / "autograder"), "-q", "-p", "no:cacheprovider"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == pytest.ExitCode.USAGE_ERROR and "--submission" in proc.stderr + proc.stdout
