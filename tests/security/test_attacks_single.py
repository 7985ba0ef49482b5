"""Attacks on one notebook graded alone: `backprop-ninja grade NB --out DIR` and Gradescope's run_autograder;
and the machine's fault must not become the student's.

The attacker's first answer cell finds the grader among its ancestors (/proc/<pid>/status, PPid), writes full
marks where the grader writes its verdict (results.json in the --out folder or in Gradescope's results folder,
and the grader's stdout, /proc/<pid>/fd/1), then kills the grader before it writes the real verdict. Its other
cells are blank: its honest score is 0.
"""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest

import security_attacks as attacks
import security_harness as h
from backprop_ninja import bundle
from fixtures.correct_cells import CORRECT_CELLS
from notebooks import write_submission

pytestmark = pytest.mark.isolation  # proves the sandbox: needs bubblewrap

# 800 MB: the grader and the sandbox can load torch, an unlimited-looking worker of the old code could not run it;
# 400 MB: not even the grader can load torch (it must say so, not crash with a traceback). Between about 500 and
# 580 MB torch's own start-up aborts in C++ (std::bad_alloc), which no Python code can catch.
LOW_ADDRESS_SPACES = (800 << 20, 400 << 20)


def forger(path: Path) -> Path:
    return write_submission(path, {"ex1_logprobs": attacks.forge_cell(h.MARK)})


def assert_honest_zero(results: dict) -> None:
    assert attacks.FORGED not in str(results), "the forged verdict was kept"
    assert results["score"] == 0 and len(results["tests"]) == len(h.UNIT_POINTS), results.get("output")
    assert all(test["score"] == 0 for test in results["tests"])


# ---------------------------------------------------------------- the single CLI

@pytest.fixture(scope="module")
def cli_forge(workdir, names_file) -> tuple[h.Run, Path, list[str]]:
    base = workdir / "cli"
    base.mkdir()
    notebook, out = forger(base / "forger.ipynb"), base / "out"
    done, leftovers = h.watched(h.grade_cli(notebook, "--out", out), h.grader_env(base / "tmp", names_file),
                                cwd=base, timeout=180, sleepers=True)
    return done, out, leftovers


def test_cli_verdict_cannot_be_forged_nor_the_grader_killed(cli_forge):
    run, out, _ = cli_forge
    assert run.returncode == 0, run.log
    assert attacks.FORGED not in run.stdout and "total: 0/32" in run.stdout, run.stdout[-2000:]
    assert_honest_zero(h.read_json(out / "results.json"))
    assert attacks.FORGED not in (out / "feedback.html").read_text()


def test_cli_leaves_nothing_behind(cli_forge):
    run, _, leftovers = cli_forge
    h.assert_nothing_left(run, leftovers)


# ---------------------------------------------------------------- Gradescope

@pytest.fixture(scope="module")
def gradescope_forge(workdir, names_file) -> tuple[h.Run, Path, list[str]]:
    """run_autograder as Gradescope runs it (the zip unpacked in ROOT/source), on the forging notebook."""
    root = workdir / "autograder"
    archive = bundle.build_gradescope_zip(workdir / "bundle", code="any")  # the sandbox's test: see h.grade_cli
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(root / "source")
        for info in zf.infolist():
            (root / "source" / info.filename).chmod(info.external_attr >> 16 & 0o777)
    (root / "submission").mkdir()
    forger(root / "submission" / "backprop_ninja.ipynb")
    env = h.grader_env(workdir / "gradescope-tmp", names_file, AUTOGRADER_ROOT=str(root),
                       BACKPROP_NINJA_PYTHON=sys.executable)
    done, leftovers = h.watched([str(root / "source" / "run_autograder")], env, cwd=root, timeout=180, sleepers=True)
    return done, root, leftovers


def test_gradescope_results_cannot_be_forged(gradescope_forge):
    run, root, _ = gradescope_forge
    assert run.returncode == 0, run.log
    results = h.read_json(root / "results" / "results.json")
    assert "could not be graded" not in results.get("output", ""), results.get("output")
    assert_honest_zero(results)


def test_gradescope_leaves_nothing_behind(gradescope_forge):
    run, _, leftovers = gradescope_forge
    h.assert_nothing_left(run, leftovers)


# ---------------------------------------------------------------- the environment, not the student

@pytest.mark.parametrize("address_space", LOW_ADDRESS_SPACES, ids=lambda size: f"{size >> 20}MB")
def test_too_little_memory_for_torch_is_not_blamed_on_a_correct_notebook(workdir, names_file, address_space):
    """Under a low address-space limit (as `prlimit --as` or `ulimit -v` set it), a correct notebook either gets
    full marks or the grader stops, saying that the machine (memory) is at fault: never 0 points for the student."""
    base = workdir / f"low-memory-{address_space >> 20}"
    base.mkdir()
    notebook, out = write_submission(base / "correct.ipynb", CORRECT_CELLS), base / "out"
    run, leftovers = h.watched(h.grade_cli(notebook, "--out", out), h.grader_env(base / "tmp", names_file),
                               cwd=base, timeout=180, address_space=address_space)
    results = h.read_json(out / "results.json") if (out / "results.json").is_file() else None
    if run.returncode == 0:
        assert results is not None and results["score"] == h.MAX_SCORE, (
            f"a correct notebook was graded {results and results['score']} under a {address_space >> 20} MB "
            f"address-space limit: {results and sorted(set(h.statuses(results).values()))}\n{run.log}")
    else:
        said = (run.stdout + run.stderr).lower()
        assert "memory" in said or "environment" in said, run.log
        assert "traceback" not in said, run.log
        if results is not None:
            blamed = {unit: status for unit, status in h.statuses(results).items() if status != "ok"}
            assert not blamed, f"the student is blamed for the machine: {blamed}"
    h.assert_nothing_left(run, leftovers)
