"""Shards without Slurm: `grade CLASS --shard K/N --out OUT` and `backprop-ninja merge OUT`.

The workers grade with a stand-in engine defined below (points from the notebook's metadata), so these tests check
the slicing, the locks, the manifests and the merge in seconds; tests/test_slurm.py runs the real engine on a real
Slurm cluster. The stand-in can wait until every shard of a run has started grading, which proves the shards of the
concurrency test really wrote into one folder at the same time.
"""
from __future__ import annotations

import argparse
import csv
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from backprop_ninja import batch
from backprop_ninja.batch import merge as merging
from backprop_ninja.batch import resume, shards
from backprop_ninja.batch.shards import Shard, parse_shard, shard_of
from backprop_ninja.cli import main
from backprop_ninja.export.csv_export import NOT_GRADED_YET
from backprop_ninja.lateness.options import late_book
from backprop_ninja.report import write_report

REPO = Path(__file__).resolve().parent.parent
UNITS = [("ex1_probs", 1.0), ("ex2_logits", 2.0)]
MEETING_ENV = "SHARD_TEST_MEETING"     # a folder where each shard leaves its tag when it starts grading
TAG_ENV = "SHARD_TEST_TAG"
MEET_TIMEOUT = 60.0                    # a stand-in gives up waiting for the others after this (the test then fails)


# ---------------------------------------------------------------- the stand-in engine (runs in the workers)

def warm_up(limits=None):
    return UNITS


def grade(path, limits):
    meeting = Path(os.environ[MEETING_ENV])
    tag = os.environ[TAG_ENV]
    (meeting / tag).touch()
    expected = int(os.environ.get("SHARD_TEST_MEET", "1"))
    deadline = time.monotonic() + MEET_TIMEOUT
    while len(list(meeting.iterdir())) < expected and time.monotonic() < deadline:
        time.sleep(0.02)
    with open(meeting.parent / "graded.log", "a") as log:
        log.write(f"{tag}\t{Path(path).stem}\n")
    try:
        points = json.loads(Path(path).read_text())["metadata"]["points"]
    except (OSError, ValueError, KeyError):
        verdicts = [_verdict(unit, top, 0.0, "error") for unit, top in UNITS]
        return _result(path, verdicts, f"{Path(path).name} is not a notebook"), {"score": 0.0, "tests": []}
    verdicts = [_verdict(unit, top, got, "ok" if got == top else "wrong") for (unit, top), got in zip(UNITS, points)]
    return _result(path, verdicts, None), {"score": float(sum(points)), "tests": []}


def _verdict(unit, top, points, status):
    return {"unit": unit, "status": status, "points": float(points), "max_points": top,
            "message": "right" if status == "ok" else "off by a constant factor", "exact": None, "max_diff": None,
            "mismatch": None}


def _result(path, verdicts, error):
    return {"submission": str(path), "verdicts": verdicts, "error": error, "execution_time": 0.01,
            "isolation": "stand-in"}


# ---------------------------------------------------------------- helpers

CLI_SCRIPT = """
import sys
from backprop_ninja import batch
from backprop_ninja.cli import main
batch.run.DEFAULT_GRADER = "test_shards"  # the stand-in engine; the CLI, the batch and the shards are the real ones
sys.exit(main(sys.argv[1:]))
"""


def make_class(folder: Path, size: int) -> list[str]:
    """`size` students with varied points, and one file that is not a notebook (a row that says so)."""
    folder.mkdir(parents=True)
    students = [f"student{i:03d}" for i in range(size)]
    for i, student in enumerate(students):
        notebook = {"cells": [], "metadata": {"points": [i % 2, 2 * (i % 3 == 0)]}, "nbformat": 4,
                    "nbformat_minor": 5}
        (folder / f"{student}.ipynb").write_text(json.dumps(notebook))
    (folder / "broken.ipynb").write_text("not json")
    return sorted(students + ["broken"])


@pytest.fixture
def meeting(tmp_path, monkeypatch):
    folder = tmp_path / "meeting"
    folder.mkdir()
    monkeypatch.setenv(MEETING_ENV, str(folder))
    monkeypatch.setenv(TAG_ENV, "in-process")
    return folder


def run_shard(folder: Path, out: Path, shard: str | None) -> batch.BatchSummary:
    return batch.run_batch(folder, out, 1, grader_module="test_shards", progress=False,
                           shard=parse_shard(shard) if shard else None)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def graded_log(meeting: Path) -> list[tuple[str, str]]:
    return [tuple(line.split("\t")) for line in (meeting.parent / "graded.log").read_text().splitlines()]


# ---------------------------------------------------------------- the slices

def test_slices_are_disjoint_cover_the_class_and_are_the_same_in_every_process(tmp_path):
    ids = [f"s{i}" for i in range(300)] + ["Ålesund", "a.b@uni.edu"]
    for count in (1, 2, 3, 7):
        slices = [{i for i in ids if Shard(k, count).owns(i)} for k in range(1, count + 1)]
        assert set().union(*slices) == set(ids)
        assert sum(len(s) for s in slices) == len(ids)  # no student in two shards
        if count > 1:
            assert all(slices)  # 300 ids fill every shard
    # another process, with another hash seed, puts every student in the same shard
    script = ("import sys, json; from backprop_ninja.batch.shards import shard_of; "
              "print(json.dumps([shard_of(i, 7) for i in json.loads(sys.argv[1])]))")
    done = subprocess.run([sys.executable, "-c", script, json.dumps(ids)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONHASHSEED": "12345"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [shard_of(i, 7) for i in ids]


@pytest.mark.parametrize("text,problem", [
    ("x", "is not K/N"), ("0/3", "K counts from 1 to N"), ("4/3", "1/3 to 3/3"), ("1/0", "at least 1"),
    ("", "is not K/N"), ("-1/3", "is not K/N"), ("1/3/5", "is not K/N"),
])
def test_bad_shard_values_are_refused_with_what_a_good_one_looks_like(tmp_path, capsys, text, problem):
    folder = tmp_path / "class"
    make_class(folder, 2)
    with pytest.raises(SystemExit) as stopped:
        main(["grade", str(folder), f"--shard={text}", "--out", str(tmp_path / "out")])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "--shard" in err and problem in err
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_shard_of_one_notebook_is_refused(tmp_path, capsys):
    notebook = tmp_path / "alice.ipynb"
    notebook.write_text("{}")
    assert main(["grade", str(notebook), "--shard", "1/2"]) == 2
    assert "--shard splits a class" in capsys.readouterr().err


# ---------------------------------------------------------------- shards side by side, then the merge

def test_two_shards_at_once_into_one_folder_then_merge_equals_a_single_run(tmp_path, meeting, monkeypatch):
    folder = tmp_path / "class"
    students = make_class(folder, 16)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), str(REPO)]), "SHARD_TEST_MEET": "2"}
    runs = [subprocess.Popen([sys.executable, "-c", CLI_SCRIPT, "grade", str(folder), "--shard", f"{k}/2",
                              "--out", str(out), "--jobs", "2"],
                             env={**env, TAG_ENV: f"shard{k}"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
            for k in (1, 2)]
    outputs = [run.communicate(timeout=300) for run in runs]

    for k, run, (stdout, stderr) in zip((1, 2), runs, outputs):
        # 3 for the shard with the broken file: its row says it could not be graded
        assert run.returncode == (3 if shard_of("broken", 2) == k else 0), stderr
        assert "once every shard has run: backprop-ninja merge" in stdout
    assert sorted(p.name for p in meeting.iterdir()) == ["shard1", "shard2"]  # both were grading at once
    log = graded_log(meeting)
    assert sorted(student for _, student in log) == students  # each student graded once, by one shard
    assert all(tag == f"shard{shard_of(student, 2)}" for tag, student in log)
    assert not (out / "grades.csv").exists()  # a shard leaves grades.csv to the merge

    merged = merging.merge(out)
    assert (merged.students, merged.missing, merged.not_run, merged.failed) == (17, {}, [], 1)
    assert merged.exit_code == 3  # like `grade`: a row could not be graded

    monkeypatch.setenv(TAG_ENV, "single")
    single = run_shard(folder, tmp_path / "single", None)
    assert single.total == 17
    assert read_rows(out / "grades.csv") == read_rows(tmp_path / "single" / "grades.csv")
    assert [row["student_id"] for row in read_rows(out / "grades.csv")] == students

    assert len(read_rows(write_report(out, tmp_path / "report")["matrix"])) == 17  # `report` reads the merged folder
    assert main(["merge", str(out), "--report", str(tmp_path / "merged-report")]) == 3  # merging again changes nothing
    assert read_rows(out / "grades.csv") == read_rows(tmp_path / "single" / "grades.csv")
    assert (tmp_path / "merged-report" / "matrix.csv").read_text() == (tmp_path / "report" / "matrix.csv").read_text()


def test_a_missing_shard_is_named_by_merge_and_running_it_completes_the_class(tmp_path, meeting, capsys):
    folder = tmp_path / "class"
    students = make_class(folder, 12)
    out = tmp_path / "out"
    for shard in ("1/3", "3/3"):
        summary = run_shard(folder, out, shard)
        assert summary.shard == shard and summary.total == sum(shard_of(s, 3) == int(shard[0]) for s in students)
    second = sorted(s for s in students if shard_of(s, 3) == 2)
    assert second  # 13 students leave no shard of three empty here

    assert main(["merge", str(out)]) == 3
    captured = capsys.readouterr()
    assert f"merged {13 - len(second)} of 13 students from 3 shards" in captured.out
    assert f"{len(second)} students are not graded yet" in captured.err and second[0] in captured.err
    assert f"--shard 2/3 --out {out}" in captured.err and "--shard 1/3" not in captured.err
    rows = {row["student_id"]: row for row in read_rows(out / "grades.csv")}
    assert sorted(rows) == students
    assert all(rows[s]["error"] == NOT_GRADED_YET for s in second)

    # a shard that stopped half-way: its manifest is there, one of its results is not
    lost = next(s for s in students if shard_of(s, 3) == 1)
    (out / lost / batch.RESULTS_NAME).unlink()
    summary = merging.merge(out)
    assert summary.missing == {1: [lost], 2: second} and summary.not_run == [2]

    run_shard(folder, out, "2/3")
    run_shard(folder, out, "1/3")
    assert sorted(student for _, student in graded_log(meeting)) == sorted(students + [lost])  # only what was left
    summary = merging.merge(out)
    assert (summary.missing, summary.not_run) == ({}, [])
    run_shard(folder, tmp_path / "single", None)
    assert read_rows(out / "grades.csv") == read_rows(tmp_path / "single" / "grades.csv")


def test_a_resubmission_is_regraded_by_its_own_shard_and_reaches_grades_csv_at_the_next_merge(tmp_path, meeting):
    folder = tmp_path / "class"
    students = make_class(folder, 4)
    out = tmp_path / "out"
    for k in (1, 2):
        run_shard(folder, out, f"{k}/2")
    changed = students[1]
    notebook = {"cells": [], "metadata": {"points": [1, 2]}, "nbformat": 4, "nbformat_minor": 5}
    (folder / f"{changed}.ipynb").write_text(json.dumps(notebook))
    owner = shard_of(changed, 2)
    run_shard(folder, out, f"{3 - owner}/2")  # the other shard runs again: not this student's
    assert merging.merge(out).missing == {}  # the merge knows the keys its shards computed, and reads no notebook
    assert not any(student == changed for _, student in graded_log(meeting)[len(students):])
    run_shard(folder, out, f"{owner}/2")
    assert graded_log(meeting)[-1] == ("in-process", changed)  # regraded by its own shard, and only it
    assert {r["student_id"]: r["total"] for r in read_rows(out / "grades.csv")}[changed] != "3"  # not merged yet
    merging.merge(out)
    assert {r["student_id"]: r["total"] for r in read_rows(out / "grades.csv")}[changed] == "3"


def test_merge_fills_the_lateness_columns_as_a_single_run_does(tmp_path, meeting):
    folder = tmp_path / "class"
    students = make_class(folder, 6)
    config = tmp_path / "nbgrader_config.py"
    config.write_text('c = get_config()\nc.Lateness.due = "2026-12-01 23:59"\nc.Lateness.penalty_per_day = 0.1\n')
    times = tmp_path / "times.csv"
    times.write_text("student_id,submitted_at\n" + "".join(f"{s},2026-12-0{1 + i % 3} 12:00\n"
                                                             for i, s in enumerate(students)))
    lateness = ["--course-config", str(config), "--submission-times", str(times)]
    out = tmp_path / "out"
    for k in (1, 2):
        run_shard(folder, out, f"{k}/2")

    assert main(["merge", str(out), *lateness]) == 3  # 3: the broken file's row

    book = late_book(argparse.Namespace(course_config=str(config), submission_times=str(times)))
    batch.run_batch(folder, tmp_path / "single", 1, grader_module="test_shards", progress=False, lateness=book)
    merged = read_rows(out / "grades.csv")
    assert merged == read_rows(tmp_path / "single" / "grades.csv")
    assert {row["penalty"] for row in merged} > {"0"}  # some were late, and paid for it


# ---------------------------------------------------------------- what may run beside what

def test_shards_are_refused_beside_a_whole_class_run_a_twin_or_another_split(tmp_path, meeting):
    folder = tmp_path / "class"
    make_class(folder, 3)
    out = tmp_path / "out"
    state = out / batch.STATE_DIR
    state.mkdir(parents=True)

    with resume.exclusive_lock(state / "lock", out):  # a whole-class batch or a merge
        with pytest.raises(batch.BatchError, match="whole-class batch or a merge is using"):
            run_shard(folder, out, "1/2")

    twin_state = shards.state_dir(state, Shard(1, 2))
    twin_state.mkdir(parents=True)
    with open(twin_state / "lock", "a+") as twin:
        fcntl.flock(twin, fcntl.LOCK_EX)
        with pytest.raises(batch.BatchError, match="Shard 1/2 is already running"):
            run_shard(folder, out, "1/2")
        with pytest.raises(batch.BatchError, match=r"Shard 1/2 is running .* must split the class the same way"):
            run_shard(folder, out, "1/3")
        assert run_shard(folder, out, "2/2").shard == "2/2"  # its sibling runs beside it
        with pytest.raises(batch.BatchError, match="Another batch is writing"):
            with shards.shard_locks(state, Shard(2, 2), out):
                merging.merge(out)  # not while a shard is writing


def test_a_shard_removes_only_its_own_students_temp_files(tmp_path):
    out = tmp_path / "out"
    for student in ("alice", "bob"):
        (out / student).mkdir(parents=True)
        (out / student / f".{batch.RESULTS_NAME}.x1.partial").write_text("{")
    (out / f".{batch.CSV_NAME}.x2.partial").write_text("")
    resume.remove_partial_files(out, ["alice"])
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.partial")) == [
        f".{batch.CSV_NAME}.x2.partial", f"bob/.{batch.RESULTS_NAME}.x1.partial"]


def test_merge_of_a_folder_without_shards_says_what_to_do(tmp_path, capsys):
    assert main(["merge", str(tmp_path / "nothing")]) == 1
    assert "nothing was graded into it" in capsys.readouterr().err


# ---------------------------------------------------------------- the recipes

def test_the_kubernetes_job_runs_one_shard_per_index_on_a_shared_volume():
    documents = [d for d in yaml.safe_load_all((REPO / "examples" / "kubernetes" / "grade-class.yaml").read_text())
                 if d]
    job = next(d for d in documents if d["kind"] == "Job" and d["spec"].get("completionMode") == "Indexed")
    spec = job["spec"]
    container = spec["template"]["spec"]["containers"][0]
    shards_env = {e["name"]: e.get("value") for e in container.get("env", [])}["SHARDS"]
    assert spec["completions"] == spec["parallelism"] == int(shards_env)
    command = " ".join(container["command"] + container.get("args", []))
    assert "JOB_COMPLETION_INDEX + 1" in command and "--shard" in command and "$SHARDS" in command
    mounted = {m["name"] for m in container["volumeMounts"]}
    claims = {v["name"] for v in spec["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v}
    assert mounted & claims  # the class and OUT live on a volume every pod shares


def test_the_slurm_scripts_are_valid_shell():
    for script in ("grade_class.sbatch", "submit.sh"):
        done = subprocess.run(["bash", "-n", str(REPO / "examples" / "slurm" / script)], capture_output=True,
                              text=True)
        assert done.returncode == 0, done.stderr
