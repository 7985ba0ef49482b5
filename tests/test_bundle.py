"""The Gradescope bundle: what autograder.zip holds, and run_autograder in a Gradescope-like folder.

setup.sh is not run here (it installs into a fresh venv from the network); the venv of this checkout
already has the pinned dependencies, so run_autograder is pointed at the current interpreter with
BACKPROP_NINJA_PYTHON, and at a temporary /autograder with AUTOGRADER_ROOT.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from backprop_ninja import bundle
from backprop_ninja.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "submitted"
MAX_SCORE = 32.0  # 26 one-point units of Exercise 1, and 2 points each for Exercises 2 to 4


@pytest.fixture(scope="module")
def autograder_zip(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle")
    assert main(["bundle", "gradescope", "--out", str(out)]) == 0
    return out / "autograder.zip"


def test_zip_has_the_scripts_at_its_root_the_pinned_requirements_and_the_source(autograder_zip):
    with zipfile.ZipFile(autograder_zip) as zf:
        names = set(zf.namelist())
        modes = {info.filename: info.external_attr >> 16 for info in zf.infolist()}
        requirements = zf.read("requirements.txt").decode()
        setup = zf.read("setup.sh").decode()
    assert {"setup.sh", "run_autograder", "requirements.txt", "pyproject.toml"} <= names
    assert {"backprop_ninja/grade/engine.py", "backprop_ninja/units.py", "backprop_ninja/data.py"} <= names
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    assert modes["run_autograder"] & stat.S_IXUSR and modes["setup.sh"] & stat.S_IXUSR
    assert "torch==2.13.0" in requirements.splitlines()
    assert all("==" in line for line in requirements.splitlines() if line and not line.startswith("#"))
    assert "setup-data" in setup  # fetches names.txt and checks its sha256


def test_the_same_source_gives_the_same_zip(autograder_zip, tmp_path):
    again = bundle.build_gradescope_zip(tmp_path)
    assert again.read_bytes() == autograder_zip.read_bytes()


@pytest.fixture(scope="module")
def gradescope_root(autograder_zip, tmp_path_factory) -> Path:
    """The zip unpacked the way Gradescope does: ROOT/source, with ROOT/submission and ROOT/results beside it."""
    root = tmp_path_factory.mktemp("autograder")
    with zipfile.ZipFile(autograder_zip) as zf:
        zf.extractall(root / "source")
    for info in zipfile.ZipFile(autograder_zip).infolist():
        (root / "source" / info.filename).chmod(info.external_attr >> 16 & 0o777)
    return root


def run_autograder(root: Path, submission: dict[str, bytes], names_file: Path, python: str = sys.executable) -> dict:
    folder = root / "submission"
    if folder.exists():
        for old in folder.iterdir():
            old.unlink()
    folder.mkdir(exist_ok=True)
    for name, content in submission.items():
        (folder / name).write_bytes(content)
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), BACKPROP_NINJA_PYTHON=python,
               BACKPROP_NINJA_NAMES=str(names_file))
    done = subprocess.run([str(root / "source" / "run_autograder")], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads((root / "results" / "results.json").read_text())


def example(student: str) -> bytes:
    return (EXAMPLES / student / "backprop_ninja" / "backprop_ninja.ipynb").read_bytes()


def assert_valid_results(data: dict) -> None:
    assert isinstance(data["score"], (int, float))
    for test in data["tests"]:
        assert {"name", "score", "max_score"} <= set(test)
        assert 0 <= test["score"] <= test["max_score"]


def test_a_correct_submission_earns_every_point(gradescope_root, names_file):
    data = run_autograder(gradescope_root, {"backprop_ninja.ipynb": example("ada")}, names_file)
    assert_valid_results(data)
    assert data["score"] == MAX_SCORE and len(data["tests"]) == 29


def test_a_wrong_submission_loses_the_units_it_got_wrong(gradescope_root, names_file):
    data = run_autograder(gradescope_root, {"my answers.ipynb": example("ben")}, names_file)
    assert_valid_results(data)
    failed = {t["name"] for t in data["tests"] if t["status"] == "failed"}
    assert 0 < data["score"] < MAX_SCORE and {"ex1_bndiff2", "ex2_logits"} <= failed


def test_a_corrupt_submission_still_gets_a_results_json(gradescope_root, names_file):
    data = run_autograder(gradescope_root, {"backprop_ninja.ipynb": b"\x89PNG not a notebook"}, names_file)
    assert_valid_results(data)
    assert data["score"] == 0 and "could not be graded" in data["output"]


def test_no_notebook_at_all_says_what_to_upload(gradescope_root, names_file):
    data = run_autograder(gradescope_root, {"answers.py": b"print(1)"}, names_file)
    assert_valid_results(data)
    assert data["score"] == 0 and "upload your backprop_ninja.ipynb" in data["output"]


def test_a_broken_python_still_gets_a_results_json(gradescope_root, names_file):
    data = run_autograder(gradescope_root, {"backprop_ninja.ipynb": example("ada")}, names_file, python="/bin/false")
    assert data["score"] == 0 and data["tests"] == []
    assert "autograder failed (exit code 1)" in data["output"]


@pytest.mark.parametrize("change, words", [
    (lambda d: d["tests"].append({"name": "ex9_forged", "score": 5, "max_score": 5}), "unknown test"),
    (lambda d: d["tests"][0].update(score=d["tests"][0]["max_score"] + 1), "it is worth"),
    (lambda d: d["tests"][0].update(max_score=100, score=100), "it is worth"),
    (lambda d: d.update(score=d["score"] + 1), "not the sum"),
    (lambda d: d["tests"].append(dict(d["tests"][0])), "repeat"),
])
def test_results_are_validated_before_they_are_written(change, words):
    from backprop_ninja.units import UNITS

    data = {"score": 0.0, "tests": [{"name": u.grade_id, "score": 0.0, "max_score": float(u.points)} for u in UNITS]}
    bundle.validate_results(data)  # the honest shape passes
    change(data)
    with pytest.raises(ValueError, match=words):
        bundle.validate_results(data)


def test_the_time_limits_chosen_for_the_bundle_are_the_ones_it_grades_with(tmp_path, names_file):
    out = tmp_path / "bundle"
    assert main(["bundle", "gradescope", "--out", str(out), "--unit-timeout", "0.05", "--total-timeout", "0.1"]) == 0
    root = tmp_path / "autograder"
    with zipfile.ZipFile(out / "autograder.zip") as zf:
        zf.extractall(root / "source")
        policy = json.loads(zf.read("backprop_ninja/gradescope_policy.json"))
        for info in zf.infolist():
            (root / "source" / info.filename).chmod(info.external_attr >> 16 & 0o777)
    assert (policy["unit_timeout"], policy["total_timeout"]) == (0.05, 0.1)
    data = run_autograder(root, {"backprop_ninja.ipynb": example("ada")}, names_file)
    assert_valid_results(data)
    # The default limits give ada every point (above); a tenth of a second for everything gives her none.
    assert data["score"] == 0 and len(data["tests"]) == 29
    assert all("time limit" in t["output"] for t in data["tests"]), data["tests"][0]["output"]


@pytest.mark.parametrize("unit, total", [("0", "60"), ("30", "20"), ("-1", "-1")])
def test_time_limits_that_cannot_work_are_refused_when_bundling(tmp_path, capsys, unit, total):
    assert main(["bundle", "gradescope", "--out", str(tmp_path), "--unit-timeout", unit, "--total-timeout", total]) == 1
    assert "--unit-timeout" in capsys.readouterr().err and not (tmp_path / "autograder.zip").exists()
