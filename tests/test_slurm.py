"""The Slurm recipe for real: a one-node cluster (tests/slurm_cluster.py), examples/slurm/submit.sh submits
grade_class.sbatch as a job array of three shards and the merge after it, and the merged grades.csv must equal a
single-machine run of the same class.

Needs Debian's slurm-wlm and munge packages (.ci/run installs them) and root: without them this test fails and says
what to install; it is never skipped.
"""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from backprop_ninja.batch.shards import shard_of
from backprop_ninja.cli import main
from slurm_cluster import INSTALL, Cluster, ClusterProblem, missing_programs

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples" / "submitted"
SUBMIT = REPO / "examples" / "slurm" / "submit.sh"
SHARDS = 3
STUDENTS = ("ada", "ben", "cleo")
BROKEN = "dan"                         # a notebook that is not JSON: its row says so, and its shard still succeeds
JOBS_TIMEOUT = 900.0                   # a deadline so a stuck cluster fails the test instead of hanging it


def make_course(course: Path) -> None:
    for student in STUDENTS:
        target = course / "submitted" / student / "backprop_ninja" / "backprop_ninja.ipynb"
        target.parent.mkdir(parents=True)
        shutil.copyfile(EXAMPLES / student / "backprop_ninja" / "backprop_ninja.ipynb", target)
    broken = course / "submitted" / BROKEN / "backprop_ninja" / "backprop_ninja.ipynb"
    broken.parent.mkdir(parents=True)
    broken.write_text("this is not a notebook")


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_slurm_job_array_of_shards_then_the_merge_equals_a_single_machine_run(tmp_path, names_file, monkeypatch):
    missing = missing_programs()
    if missing:
        pytest.fail(f"Slurm or munge is not installed (missing: {', '.join(missing)}); install them with "
                    f"`{INSTALL}` (.ci/run does).", pytrace=False)
    course, out = tmp_path / "course", tmp_path / "out"
    make_course(course)
    students = sorted(STUDENTS + (BROKEN,))
    assert len({shard_of(s, SHARDS) for s in students}) > 1  # the class really is spread over several tasks

    monkeypatch.setenv("BACKPROP_NINJA", str(REPO / ".venv" / "bin" / "backprop-ninja"))
    monkeypatch.setenv("BACKPROP_NINJA_NAMES", str(names_file))
    cluster = Cluster(tmp_path / "slurm")
    job_ids: list[str] = []
    try:
        try:
            cluster.start()
            submitted = _submit(cluster, course, out, tmp_path)
            job_ids = re.findall(r"job array (\d+) .* merge: job (\d+)", submitted)[0]
            cluster.wait_for(list(job_ids), JOBS_TIMEOUT)
        except ClusterProblem as problem:
            pytest.fail(f"the Slurm cluster failed: {problem}", pytrace=False)
        array_id, merge_id = job_ids
        tasks = cluster.client("scontrol", "-o", "show", "job", array_id).stdout.splitlines()
        assert len(tasks) == SHARDS and all("JobState=COMPLETED" in task for task in tasks), cluster.logs()
        merge_job = cluster.client("scontrol", "-o", "show", "job", merge_id).stdout
        assert "ExitCode=3:0" in merge_job, cluster.logs()  # ran after the array; 3: the broken file's row
    finally:
        cluster.stop(list(job_ids))

    merge_log = next((out / ".batch" / "slurm").glob("merge-*.out")).read_text()
    assert f"merged {len(students)} of {len(students)} students from {SHARDS} shards (1 could not be graded)" \
        in merge_log
    for k in range(1, SHARDS + 1):  # every task graded its slice, an empty one too
        task_log = next((out / ".batch" / "slurm").glob(f"grade-*_{k}.out")).read_text()
        assert f"shard {k}/{SHARDS}: graded {sum(shard_of(s, SHARDS) == k for s in students)}," in task_log

    monkeypatch.chdir(tmp_path)  # where the merge job ran: no course config there, so no lateness in either
    assert main(["grade", str(course), "--out", str(tmp_path / "single"), "--jobs", "2"]) == 3
    merged, single = read_rows(out / "grades.csv"), read_rows(tmp_path / "single" / "grades.csv")
    assert [row["student_id"] for row in merged] == students
    assert merged == single  # the same rows and points (grades.csv has no timing column)
    assert float(merged[0]["total"]) > 0  # ada's answers earn points: the tasks really graded

    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0
    assert len(read_rows(tmp_path / "report" / "matrix.csv")) == len(students)


def _submit(cluster: Cluster, course: Path, out: Path, cwd: Path) -> str:
    """examples/slurm/submit.sh, as an instructor runs it; its last line names the array and the merge job."""
    # one CPU per task (the script asks for two), so two shards share this two-core node at once
    done = subprocess.run(["bash", str(SUBMIT), str(course), str(out), str(SHARDS), "--cpus-per-task=1"],
                          capture_output=True, text=True, env=cluster.env, cwd=cwd, timeout=60)
    if done.returncode != 0:
        raise ClusterProblem(f"submit.sh failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout
