"""Attacks on the batch grader (`backprop-ninja grade FOLDER --out DIR --jobs 2`), all in one run.

The class: two honest students (alice, bob: every answer right) and one attacker per attack, whose other cells
are blank, so the attacker's honest score is 0. After the batch ends the test waits until the attackers'
sleepers would have struck, then reads what is left. Each test checks one attack; every attack must leave the
points alone (the attacker's and the classmates'), and nothing of the run may stay behind.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

import pytest

import security_attacks as attacks
import security_harness as h
from backprop_ninja.assign import REPO
from fixtures.correct_cells import CORRECT_CELLS
from notebooks import write_submission

pytestmark = pytest.mark.isolation  # proves the sandbox: needs bubblewrap

HONEST = ("alice", "bob")
KILLER = "aa_killer"       # sorts first, so it is graded beside alice
OUTLIVER, OUTLIVED = "m_outlive", "bob"
LEAKER, REACHER, LITTERER = "m_leaker", "m_reach", "m_litter"
HUGE, NESTED = "h_huge_cell", "h_nested"
ATTACKERS = (KILLER, OUTLIVER, LEAKER, REACHER, LITTERER, HUGE, NESTED)

# A line of each kit file that only that file has (a reference share, the reference solution of Exercise 4).
KIT_FILES = {
    "ex1_logprobs": (REPO / "backprop_ninja" / "units.py",
                     "index_add_(0, v.Xb.reshape(-1), v.demb.reshape(-1, v.C.shape[1]))"),
    "ex1_probs": (REPO / "source" / "backprop_ninja.py", "n * dhpreact - dbnbias - n / (n - 1) * bnraw * dbngain"),
    "ex1_counts_sum_inv": (REPO / "solutions" / "backprop_ninja" / "backprop_ninja.ipynb",
                           "index_add_(0, Xb.view(-1), demb.view(-1, C.shape[1]))"),
}
MAX_STUDENT_TEXT = 300


@dataclass
class BatchRun:
    run: h.Run
    out: Path
    after_batch: dict[str, bytes]   # the output folder when the batch had just ended
    settled: dict[str, bytes]       # ... and once the attackers' sleepers would have struck
    leftovers: list[str]
    secret_words: dict[str, str]    # what must never reach a student: name -> text

    def results(self, student: str) -> dict:
        return h.read_json(self.out / student / "results.json")

    def rows(self) -> dict[str, dict]:
        return h.read_rows(self.out / "grades.csv")


@pytest.fixture(scope="module")
def batch(workdir, names_file) -> BatchRun:
    base = workdir / "batch"
    folder, out = base / "class", base / f"results-{secrets.token_hex(6)}"
    folder.mkdir(parents=True)
    for student in HONEST:
        write_submission(folder / f"{student}.ipynb", CORRECT_CELLS)
    for kit_file, needle in KIT_FILES.values():
        assert needle in kit_file.read_text(), f"{kit_file} no longer holds {needle!r}: pick another line"
    leaks = {grade_id: (str(path), needle) for grade_id, (path, needle) in KIT_FILES.items()}
    attackers = {
        KILLER: {"ex1_logprobs": attacks.kill_workers_cell(h.MARK)},
        OUTLIVER: {"ex1_logprobs": attacks.outlive_cell(h.MARK, str(out), OUTLIVER, OUTLIVED)},
        LEAKER: attacks.leak_cells(h.MARK, leaks),
        REACHER: attacks.reach_cells(h.MARK),
        LITTERER: {"ex1_logprobs": attacks.litter_cell(h.MARK)},
        HUGE: {"ex1_logprobs": attacks.huge_cell()},
        NESTED: {"ex1_logprobs": attacks.deeply_nested_cell()},
    }
    for student, cells in attackers.items():
        write_submission(folder / f"{student}.ipynb", cells)

    after_batch: dict[str, bytes] = {}
    done, leftovers = h.watched(h.grade_cli(folder, "--out", out, "--jobs", "2"),
                                h.grader_env(base / "tmp", names_file), cwd=base, timeout=300,
                                files=attacks.litter_paths(h.MARK), sleepers=True,
                                when_done=lambda: after_batch.update(h.snapshot(out)))
    settled = h.snapshot(out)
    init = h.cmdline(1).split(" ")[0]
    secret_words = {"the grader's secret environment variable": h.SECRET, "the run's token": h.MARK,
                    "the output folder's name (from the grader's command line)": out.name,
                    **{f"a line of {path.name}": needle for path, needle in KIT_FILES.values()}}
    if len(init) >= 8:
        secret_words["the host's /proc/1/cmdline"] = init
    return BatchRun(done, out, after_batch, settled, leftovers, secret_words)


def test_the_batch_finishes_and_writes_a_row_for_every_student(batch):
    assert batch.run.returncode in (0, 3), batch.run.log
    assert set(batch.rows()) == set(HONEST) | set(ATTACKERS), batch.run.log


@pytest.mark.parametrize("student", HONEST)
def test_honest_classmates_keep_full_marks_whatever_the_attackers_did(batch, student):
    results = batch.results(student)
    assert results["score"] == h.MAX_SCORE, h.statuses(results)
    row = batch.rows()[student]
    assert float(row["total"]) == h.MAX_SCORE and row["error"] == "", row


def test_killing_the_other_workers_changes_nobodys_points(batch):
    """aa_killer kills every process of the grader it can see but its own ancestors, once one is busy."""
    rows = batch.rows()
    for student in HONEST:
        assert rows[student]["error"] == "" and float(rows[student]["total"]) == h.MAX_SCORE, rows[student]
    assert float(rows[KILLER]["total"]) == 0, rows[KILLER]


def test_a_sleeper_cannot_rewrite_results_after_the_batch(batch):
    """m_outlive leaves a process (double fork, setsid) that waits for the batch to end, then rewrites its own
    results.json to full marks, bob's to 0, and grades.csv."""
    changed = sorted(name for name in batch.after_batch if batch.settled.get(name) != batch.after_batch[name])
    assert not changed, f"files rewritten after the batch ended: {changed}"
    assert batch.results(OUTLIVER)["score"] == 0
    assert batch.results(OUTLIVED)["score"] == h.MAX_SCORE
    assert attacks.FORGED.encode() not in b"".join(batch.settled.values())


def test_nothing_of_the_run_is_left_behind(batch):
    """m_litter writes to /tmp and /dev/shm and starts sleepers (fork, a `sleep` program in a new session, a double
    fork); m_outlive leaves one too. Once the batch is done, none of them may remain, nor any file of theirs, nor
    anything in the grader's TMPDIR."""
    h.assert_nothing_left(batch.run, batch.leftovers)
    assert float(batch.rows()[LITTERER]["total"]) == 0


@pytest.mark.parametrize("unit", sorted(attacks.reach_cells("x")))
def test_a_route_to_autograd_or_to_the_graders_memory_scores_nothing(batch, unit):
    """m_reach answers each unit only through a forbidden route: the grader's memory through /proc, autograd in a
    child process, forward-mode AD imported by name, a fresh autograd engine, nn.Parameter with
    torch.autograd.grad reached through getattr."""
    test = next(t for t in batch.results(REACHER)["tests"] if t["name"] == unit)
    status = (test.get("extra_data") or {}).get("status")
    assert test["score"] == 0 and status in ("uses_autograd", "error", "crashed"), test


def test_exception_text_leaks_no_kit_file_no_command_line_and_no_environment(batch):
    """m_leaker raises exceptions whose text is a line of units.py, of the text source, of the solutions, the
    command lines of the grader's processes and of /proc/1, and the grader's environment."""
    text = h.student_visible_text(batch.settled)
    leaked = [what for what, word in batch.secret_words.items() if word in text]
    assert not leaked, f"students can read: {leaked}"


def test_no_result_quotes_more_than_300_characters_of_student_text(batch):
    long_text = attacks.long_student_text()
    text = h.student_visible_text(batch.settled)
    window = MAX_STUDENT_TEXT + 1
    quoted = [i for i in range(len(long_text) - window + 1) if long_text[i:i + window] in text]
    assert not quoted, f"a result quotes {window}+ characters of the student's exception text (from {quoted[0]})"


@pytest.mark.parametrize("student", [HUGE, NESTED])
def test_hostile_cells_become_rows(batch, student):
    """A 24 MB answer cell, an expression nested 100,000 deep: the grader survives and writes their row."""
    row = batch.rows()[student]
    assert float(row["total"]) == 0, row
    if row["error"]:
        assert h.unclear(row["error"]) is None, h.unclear(row["error"])


# ---------------------------------------------------------------- isolation is recorded

@pytest.fixture(scope="module")
def unisolated(workdir, names_file) -> tuple[h.Run, Path]:
    base = workdir / "unisolated"
    (base / "class").mkdir(parents=True)
    write_submission(base / "class" / "alice.ipynb", CORRECT_CELLS)
    done, _ = h.watched(h.grade_cli(base / "class", "--out", base / "out", "--jobs", "1", "--no-isolation"),
                        h.grader_env(base / "tmp", names_file), cwd=base, timeout=180)
    return done, base / "out"


def isolation_of(results: dict) -> str:
    value = (results.get("extra_data") or {}).get("isolation")
    assert isinstance(value, str) and value, f"results.json has no extra_data.isolation: {results.get('extra_data')}"
    return value


def test_a_normal_batch_records_its_isolation_and_no_isolation_records_none(batch, unisolated):
    isolated = isolation_of(batch.results("alice"))
    assert not isolated.startswith("none"), isolated
    assert "isolation" in batch.rows()["alice"], "grades.csv has no isolation column"
    assert batch.rows()["alice"]["isolation"] == isolated

    run, out = unisolated
    assert run.returncode == 0, run.log
    assert isolation_of(h.read_json(out / "alice" / "results.json")).startswith("none")
    assert h.read_rows(out / "grades.csv")["alice"]["isolation"].startswith("none")
