"""Batch grading: discovery of the three input layouts, the warm pool, faults as rows, resume after SIGKILL.

Most tests grade with a stand-in engine defined below (`warm_up`/`grade`, loaded by the workers from
this module), so they check the batch machinery in seconds; the SIGKILL test drives the real CLI with
that stand-in, and the last test grades real notebooks with the real engine through the CLI.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from backprop_ninja import batch
from backprop_ninja.batch import unzip

FAKE_UNITS = [("ex1_probs", 1.0), ("ex1_bnvar", 1.0), ("ex2_logits", 2.0)]
GRADE_LOG_ENV = "BATCH_TEST_GRADE_LOG"


# ---------------------------------------------------------------- the stand-in engine (runs in the workers)

def warm_up(limits=None):
    return FAKE_UNITS


def grade(path, limits):
    """Behaves as the notebook's metadata says: right, wrong, or one of the ways a grader can fail."""
    with open(os.environ[GRADE_LOG_ENV], "a") as log:
        log.write(f"{os.getpid()}\t{Path(path).name}\n")
    try:
        behaviour = json.loads(Path(path).read_text())["metadata"]["behaviour"]
    except (OSError, ValueError, KeyError):
        reason = f"{path} is not a notebook"
        verdicts = [_verdict(g, p, "error", reason, 0) for g, p in FAKE_UNITS]
        return _result(path, verdicts, reason), {"score": 0.0, "tests": []}
    time.sleep(float(os.environ.get("BATCH_TEST_DELAY", "0")))
    if behaviour == "exit":
        os._exit(7)
    if behaviour == "oom":
        os.kill(os.getpid(), signal.SIGKILL)
    if behaviour == "hang":
        time.sleep(3600)
    if behaviour == "raise":
        raise RuntimeError("engine bug")
    status = "ok" if behaviour == "right" else "wrong"
    message = "right" if status == "ok" else "off by a factor n/(n-1): Bessel's correction, n vs n-1"
    verdicts = [_verdict(g, p, status, message, p if status == "ok" else 0) for g, p in FAKE_UNITS]
    score = sum(v["points"] for v in verdicts)
    return _result(path, verdicts, None), {"score": score, "tests": [{"name": g} for g, _ in FAKE_UNITS]}


def _verdict(unit, max_points, status, message, points):
    return {"unit": unit, "status": status, "points": float(points), "max_points": max_points,
            "message": message, "exact": None, "max_diff": None, "mismatch": None}


STAND_IN_ISOLATION = "stand-in"


def _result(path, verdicts, error):
    return {"submission": str(path), "verdicts": verdicts, "error": error, "execution_time": 0.01,
            "isolation": STAND_IN_ISOLATION}


# ---------------------------------------------------------------- helpers

def write_fake_notebook(path: Path, behaviour: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": [], "metadata": {"behaviour": behaviour}, "nbformat": 4,
                                "nbformat_minor": 5}))
    return path


@pytest.fixture
def grade_log(tmp_path, monkeypatch):
    log = tmp_path / "grade.log"
    log.touch()
    monkeypatch.setenv(GRADE_LOG_ENV, str(log))
    return log


def graded_names(log: Path) -> list[str]:
    return [line.split("\t")[1] for line in log.read_text().splitlines()]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_fake_batch(source, out, **kwargs):
    kwargs.setdefault("jobs", 2)
    kwargs.setdefault("progress", False)
    return batch.run_batch(source, out, grader_module="test_batch", **kwargs)


# ---------------------------------------------------------------- discovery

def test_nbgrader_course_layout_gives_one_submission_per_student_folder(tmp_path):
    course = tmp_path / "course"
    write_fake_notebook(course / "submitted" / "alice" / "backprop_ninja" / "backprop_ninja.ipynb", "right")
    write_fake_notebook(course / "submitted" / "alice" / "backprop_ninja" / "scratch.ipynb", "wrong")
    write_fake_notebook(course / "submitted" / "bob" / "backprop_ninja" / "mine.ipynb", "wrong")
    (course / "submitted" / "carol" / "backprop_ninja").mkdir(parents=True)

    subs = {s.student_id: s for s in batch.discover(course, tmp_path / "work")}

    assert sorted(subs) == ["alice", "bob", "carol"]
    assert subs["alice"].path.name == "backprop_ninja.ipynb"  # the assignment's notebook wins over scratch
    assert subs["bob"].path.name == "mine.ipynb"
    assert not subs["carol"].path.is_file()  # graded as a row that says there is no notebook
    assert "no .ipynb file" in subs["carol"].source


def test_folder_of_notebooks_uses_file_stems_and_id_pattern(tmp_path):
    folder = tmp_path / "class"
    write_fake_notebook(folder / "alice.ipynb", "right")
    write_fake_notebook(folder / "bob smith.ipynb", "right")
    write_fake_notebook(folder / ".ipynb_checkpoints" / "alice-checkpoint.ipynb", "right")

    assert [s.student_id for s in batch.discover(folder, tmp_path)] == ["alice", "bob_smith"]

    lms = tmp_path / "lms"
    write_fake_notebook(lms / "hw_jdoe_attempt_2026-01-30_backprop.ipynb", "right")
    write_fake_notebook(lms / "readme-notes.ipynb", "right")
    pattern = r".*_(?P<student_id>\w+?)_attempt_"
    assert [s.student_id for s in batch.discover(lms, tmp_path, pattern)] == ["jdoe"]


def test_zip_of_notebooks_is_unpacked_safely_and_ids_come_from_entry_names(tmp_path):
    nb = write_fake_notebook(tmp_path / "src.ipynb", "right").read_bytes()
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("alice.ipynb", nb)
        zf.writestr("sub/bob.ipynb", nb)
        zf.writestr("../../evil.ipynb", nb)  # must not escape the unpack folder
        zf.writestr("notes.txt", "not a notebook")
        zf.writestr("Carol.IPYNB", nb)  # the suffix's case is not kept by every LMS

    subs = batch.discover(archive, tmp_path / "work")

    assert [s.student_id for s in subs] == ["Carol", "alice", "bob", "evil"]
    assert all((tmp_path / "work" / "unzipped") in s.path.parents for s in subs)
    assert subs[1].source == f"{archive}!alice.ipynb"
    assert not (tmp_path.parent / "evil.ipynb").exists()


def test_a_missing_input_is_named(tmp_path):
    with pytest.raises(batch.BatchError, match=r"class.zip does not exist"):
        batch.discover(tmp_path / "class.zip", tmp_path)


def test_duplicate_student_ids_stop_the_batch_with_both_files_named(tmp_path):
    folder = tmp_path / "class"
    write_fake_notebook(folder / "a" / "alice.ipynb", "right")
    write_fake_notebook(folder / "b" / "alice.ipynb", "right")
    with pytest.raises(batch.BatchError, match=r"alice.*a/alice.ipynb.*b/alice.ipynb"):
        batch.discover(folder, tmp_path)


# ---------------------------------------------------------------- untrusted zips

def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in entries.items():
            zf.writestr(name, content)
    return path


def test_a_zip_that_unpacks_past_the_cap_stops_the_batch_without_writing_past_it(tmp_path, monkeypatch):
    monkeypatch.setattr(unzip, "MAX_UNPACKED_BYTES", 100_000)
    archive = _zip(tmp_path / "class.zip", {f"s{i:02d}.ipynb": b"0" * 10_000 for i in range(30)})

    with pytest.raises(batch.BatchError, match=r"class\.zip unpacks to more than 97.7 KB .*MAX_UNPACKED_BYTES"):
        batch.discover(archive, tmp_path / "work")

    written = sum(f.stat().st_size for f in (tmp_path / "work" / "unzipped").iterdir())
    assert 90_000 <= written <= 100_000  # it unpacked up to the cap, and not a byte past it


def test_a_zip_with_too_many_entries_stops_the_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(unzip, "MAX_ZIP_ENTRIES", 3)
    archive = _zip(tmp_path / "class.zip", {f"s{i}.ipynb": b"{}" for i in range(4)})
    with pytest.raises(batch.BatchError, match=r"class\.zip has 4 entries, over the cap of 3"):
        batch.discover(archive, tmp_path / "work")


@pytest.mark.parametrize("sneaky", ["../alice.ipynb", "a/../alice.ipynb", "/alice.ipynb"])
def test_zip_entries_that_clean_to_the_same_file_stop_the_batch_naming_both(tmp_path, sneaky):
    archive = _zip(tmp_path / "class.zip", {"alice.ipynb": b"{}", sneaky: b"{}"})
    with pytest.raises(batch.BatchError) as raised:
        batch.discover(archive, tmp_path / "work")
    message = str(raised.value)
    assert "class.zip" in message and "'alice.ipynb'" in message and repr(sneaky) in message


def test_bad_zip_entries_become_their_students_rows_and_are_never_links(tmp_path):
    good = write_fake_notebook(tmp_path / "src.ipynb", "right").read_bytes()
    link = zipfile.ZipInfo("carol.ipynb")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16  # a symlink entry: its content is the link's target
    archive = tmp_path / "class.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("alice.ipynb", b" " * (11 << 20))            # over the 10 MB limit of a notebook
        zf.writestr("bob.ipynb", b"{" + b" " * (2 << 20) + b"}")  # 2 MB that packs into a few KB
        zf.writestr(link, "/dev/zero")
        zf.writestr("dave.ipynb", good)

    subs = {s.student_id: s for s in batch.discover(archive, tmp_path / "work")}

    assert subs["alice"].refused.startswith("alice.ipynb is 11 MB, over the 10 MB limit of a notebook; clear")
    assert "bob.ipynb unpacks to over 200 times its packed size" in subs["bob"].refused
    assert subs["carol"].refused == "carol.ipynb is a symbolic link in the zip; submit the notebook file itself"
    assert subs["dave"].refused is None and subs["dave"].path.read_bytes() == good
    for student in ("alice", "bob", "carol"):  # an empty regular file stands in; nothing of the entry is kept
        assert not subs[student].path.is_symlink() and subs[student].path.stat().st_size == 0
    assert subs["alice"].source == f"{archive}!alice.ipynb"


def test_a_notebook_over_the_limit_is_refused_by_its_size(tmp_path, monkeypatch):
    monkeypatch.setattr(unzip, "MAX_NOTEBOOK_BYTES", 50_000)
    archive = _zip(tmp_path / "class.zip", {"alice.ipynb": os.urandom(60_000), "bob.ipynb": b"{}"})
    subs = {s.student_id: s for s in batch.discover(archive, tmp_path / "work")}
    assert subs["alice"].refused.startswith("alice.ipynb is 58.6 KB, over the 48.8 KB limit")
    assert subs["bob"].refused is None


# ---------------------------------------------------------------- class folders: links and special files

@pytest.fixture
def never_hangs():
    """A FIFO opened for reading, or /dev/zero read to its end, would block the test forever: fail instead."""
    def stuck(signum, frame):
        raise TimeoutError("the batch blocked on a special file")
    previous = signal.signal(signal.SIGALRM, stuck)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_links_pipes_and_folders_named_like_notebooks_are_rows_never_opened(tmp_path, grade_log, never_hangs):
    folder = tmp_path / "class"
    write_fake_notebook(folder / "dave.ipynb", "right")
    (folder / "alice.ipynb").symlink_to("/dev/zero")
    os.mkfifo(folder / "bob.ipynb")
    (folder / "carol.ipynb").mkdir()

    subs = {s.student_id: s for s in batch.discover(folder, tmp_path / "work")}

    assert sorted(subs) == ["alice", "bob", "carol", "dave"]
    assert subs["alice"].refused == "alice.ipynb is a symbolic link; submit the notebook file itself"
    assert subs["bob"].refused == "bob.ipynb is a named pipe (FIFO); submit the notebook file itself"
    assert subs["carol"].refused == "carol.ipynb is a folder; submit the notebook file itself"
    assert subs["dave"].refused is None

    out = tmp_path / "out"
    summary = run_fake_batch(folder, out, jobs=1)

    rows = {row["student_id"]: row for row in read_csv(out / "grades.csv")}
    assert rows["alice"]["error"] == subs["alice"].refused and rows["alice"]["total"] == "0"
    assert rows["bob"]["ex1_probs_status"] == "crashed" and "named pipe" in rows["bob"]["error"]
    assert rows["dave"]["total"] == "4" and rows["dave"]["error"] == ""
    assert graded_names(grade_log) == ["dave.ipynb"]  # the grader never saw the others
    assert (summary.graded, summary.failed) == (4, 3)
    assert run_fake_batch(folder, out, jobs=1).skipped == 4  # refused rows are final until the file changes


def test_a_linked_folder_in_a_class_folder_is_named_not_entered(tmp_path, capsys):
    folder = tmp_path / "class"
    write_fake_notebook(folder / "dave.ipynb", "right")
    write_fake_notebook(tmp_path / "elsewhere" / "eve.ipynb", "right")
    (folder / "extra").symlink_to(tmp_path / "elsewhere", target_is_directory=True)

    assert [s.student_id for s in batch.discover(folder, tmp_path / "work")] == ["dave"]
    assert f"not looking inside {folder / 'extra'}: it is a symbolic link" in capsys.readouterr().err


def test_nbgrader_links_and_special_files_become_their_students_rows(tmp_path, never_hangs):
    submitted = tmp_path / "course" / "submitted"
    write_fake_notebook(submitted / "bob" / "backprop_ninja" / "backprop_ninja.ipynb", "right")
    write_fake_notebook(tmp_path / "elsewhere" / "backprop_ninja" / "backprop_ninja.ipynb", "right")
    (submitted / "alice").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    (submitted / "carol" / "backprop_ninja").mkdir(parents=True)
    os.mkfifo(submitted / "carol" / "backprop_ninja" / "backprop_ninja.ipynb")
    (submitted / "dan").mkdir()
    (submitted / "dan" / "backprop_ninja").symlink_to(tmp_path / "elsewhere" / "backprop_ninja")

    subs = {s.student_id: s for s in batch.discover(tmp_path / "course", tmp_path / "work")}

    assert sorted(subs) == ["alice", "bob", "carol", "dan"]
    assert subs["alice"].refused.startswith("the student's folder alice is a symbolic link; put the folder itself")
    assert subs["carol"].refused == "backprop_ninja.ipynb is a named pipe (FIFO); submit the notebook file itself"
    assert "dan/backprop_ninja is a symbolic link, not a folder" in subs["dan"].refused
    assert subs["bob"].refused is None


def test_the_content_hash_never_follows_a_link_or_reads_a_pipe(tmp_path, never_hangs):
    notebook = write_fake_notebook(tmp_path / "real.ipynb", "right")
    (tmp_path / "link.ipynb").symlink_to(notebook)
    (tmp_path / "zero.ipynb").symlink_to("/dev/zero")
    os.mkfifo(tmp_path / "pipe.ipynb")

    real = batch.content_sha256(notebook)
    assert real == hashlib.sha256(notebook.read_bytes()).hexdigest()
    assert batch.content_sha256(tmp_path / "link.ipynb") != real
    assert batch.content_sha256(tmp_path / "zero.ipynb") != batch.content_sha256(Path("/dev/zero"))
    assert batch.content_sha256(tmp_path / "pipe.ipynb") == batch.content_sha256(tmp_path)  # not a regular file


# ---------------------------------------------------------------- grading

def test_faults_are_rows_and_the_batch_goes_on(tmp_path, grade_log):
    folder = tmp_path / "class"
    for name in ("right", "wrong", "exit", "oom", "hang", "raise"):
        write_fake_notebook(folder / f"{name}.ipynb", name)
    (folder / "garbage.ipynb").write_text("this is not json")
    out = tmp_path / "out"

    summary = run_fake_batch(folder, out, watchdog_seconds=3.0)

    rows = {row["student_id"]: row for row in read_csv(out / "grades.csv")}
    assert sorted(rows) == ["exit", "garbage", "hang", "oom", "raise", "right", "wrong"]
    assert rows["right"]["total"] == "4" and rows["right"]["max"] == "4" and rows["right"]["error"] == ""
    assert rows["right"]["ex2_logits"] == "2" and rows["right"]["ex1_bnvar_status"] == "ok"
    assert rows["wrong"]["total"] == "0" and rows["wrong"]["ex1_bnvar_status"] == "wrong"
    assert "exited with code 7" in rows["exit"]["error"]
    assert "SIGKILL" in rows["oom"]["error"]
    assert "longer than 3 s" in rows["hang"]["error"]
    assert "RuntimeError: engine bug" in rows["raise"]["error"]
    assert "not a notebook" in rows["garbage"]["error"]
    assert (summary.graded, summary.failed, summary.exit_code) == (7, 5, batch.EXIT_SOME_NOT_GRADED)
    for student in rows:  # every row also has a Gradescope results.json
        data = json.loads((out / student / "results.json").read_text())
        assert isinstance(data["score"], float) and isinstance(data["tests"], list)


def test_grades_csv_says_how_each_submission_was_isolated(tmp_path, grade_log):
    folder = tmp_path / "class"
    write_fake_notebook(folder / "a_right.ipynb", "right")
    write_fake_notebook(folder / "b_exit.ipynb", "exit")
    (folder / "c_link.ipynb").symlink_to(folder / "a_right.ipynb")
    out = tmp_path / "out"

    run_fake_batch(folder, out, jobs=1)  # one worker: a_right is graded before b_exit crashes it

    rows = read_csv(out / "grades.csv")
    header = list(rows[0])
    policies = ["ex2_logits_status", "isolation", "rules", "shape", "code", "error"]  # beside the statuses
    assert header[header.index("ex2_logits_status"):][:6] == policies
    isolation = {row["student_id"]: row["isolation"] for row in rows}
    assert isolation == {"a_right": STAND_IN_ISOLATION,  # as the engine's result says
                         "b_exit": STAND_IN_ISOLATION,   # the crash happened under the batch's mode
                         "c_link": ""}                   # nothing of it ran
    assert batch.read_record(out / "a_right" / "results.json")["isolation"] == STAND_IN_ISOLATION


def test_a_record_keeps_the_results_isolation_and_a_missing_one_reads_empty():
    from backprop_ninja.export.csv_export import grades_table

    sub = batch.Submission("alice", Path("alice.ipynb"), "alice.ipynb")
    result = {"verdicts": [_verdict("ex1_probs", 1.0, "ok", "right", 1.0)], "error": None, "isolation": "bwrap",
              "rules": "strict", "shape": "lenient", "code": "any"}
    record = batch.make_record(sub, "key", "v", "sha", "run", result, [("ex1_probs", 1.0)])
    older = dict(record, isolation=None)  # a record written before results said how they ran

    table = grades_table([("alice", "alice.ipynb", record), ("bob", "bob.ipynb", older), ("carol", "c", None)])

    assert table[0] == ["student_id", "source", "ex1_probs", "total", "max", "ex1_probs_status", "isolation", "rules",
                        "shape", "code", "error"]
    assert [row[6] for row in table[1:]] == ["bwrap", "", ""]
    assert [row[7] for row in table[1:]] == ["strict", "strict", ""]  # the rule policy, as the result recorded it
    assert [row[8] for row in table[1:]] == ["lenient", "lenient", ""]  # the shape policy, likewise
    assert [row[9] for row in table[1:]] == ["any", "any", ""]  # and the code policy
    assert table[3][10].startswith("not graded yet")


def test_the_batch_main_process_imports_no_torch(tmp_path):
    folder = tmp_path / "class"
    write_fake_notebook(folder / "alice.ipynb", "right")
    script = ("import sys; from backprop_ninja import batch; import backprop_ninja.batch.worker; "
              f"batch.discover({str(folder)!r}, {str(tmp_path / 'work')!r}); batch.grader_version(); "
              "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_workers_stay_warm_and_a_rerun_grades_nothing(tmp_path, grade_log):
    folder = tmp_path / "class"
    for i in range(8):
        write_fake_notebook(folder / f"s{i:02d}.ipynb", "right" if i % 2 else "wrong")
    out = tmp_path / "out"

    first = run_fake_batch(folder, out, jobs=2)
    pids = {line.split("\t")[0] for line in grade_log.read_text().splitlines()}
    second = run_fake_batch(folder, out, jobs=2)

    assert len(pids) <= 2  # two workers graded all eight: no process per submission
    assert (first.graded, first.exit_code) == (8, batch.EXIT_ALL_GRADED)
    assert (second.graded, second.skipped) == (0, 8)
    assert sorted(graded_names(grade_log)) == sorted(f"s{i:02d}.ipynb" for i in range(8))

    write_fake_notebook(folder / "s03.ipynb", "wrong")  # a resubmission: new content, new key
    third = run_fake_batch(folder, out, jobs=2)
    assert third.graded == 1 and graded_names(grade_log)[-1] == "s03.ipynb"
    assert {r["student_id"]: r["total"] for r in read_csv(out / "grades.csv")}["s03"] == "0"


def test_a_new_grader_version_regrades(tmp_path, grade_log, monkeypatch):
    folder = tmp_path / "class"
    write_fake_notebook(folder / "alice.ipynb", "right")
    out = tmp_path / "out"
    run_fake_batch(folder, out, jobs=1)
    monkeypatch.setattr(batch.resume, "grader_version", lambda: "9.9.9+feedfacecafe")
    assert run_fake_batch(folder, out, jobs=1).graded == 1
    assert len(graded_names(grade_log)) == 2


def test_the_grading_code_hash_covers_units_engine_sandbox_and_worker_but_not_the_cli():
    files = {p.relative_to(batch.PACKAGE_DIR).as_posix() for p in batch.resume.grading_code_files()}
    assert {"units.py", "model.py", "grade/compare.py", "grade/verdict.py", "sandboxed/__init__.py",
            "batch/worker.py"} <= files
    assert "grade/cli.py" not in files and "batch/run.py" not in files and "batch/inputs.py" not in files


def test_a_second_batch_on_the_same_output_is_refused(tmp_path):
    out = tmp_path / "out"
    (out / batch.STATE_DIR).mkdir(parents=True)
    with batch.resume.exclusive_lock(out / batch.STATE_DIR / "lock", out):
        with pytest.raises(batch.BatchError, match="Another batch"):
            batch.run_batch(tmp_path, out, 1, grader_module="test_batch", progress=False)


# ---------------------------------------------------------------- resume after SIGKILL

KILL_SCRIPT = """
import sys
from backprop_ninja import batch
from backprop_ninja.cli import main
batch.run.DEFAULT_GRADER = "test_batch"  # the stand-in engine: the CLI and the batch machinery are the real ones
sys.exit(main(sys.argv[1:]))
"""


def test_sigkill_at_random_points_then_rerun_grades_each_submission_exactly_once(tmp_path, grade_log):
    folder = tmp_path / "class"
    students = [f"student{i:02d}" for i in range(12)]
    for i, student in enumerate(students):
        write_fake_notebook(folder / f"{student}.ipynb", "right" if i % 3 else "wrong")
    out = tmp_path / "out"
    commits = out / ".batch" / "commits.log"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parent)] + sys.path),
               BATCH_TEST_DELAY="0.25")
    command = [sys.executable, "-c", KILL_SCRIPT, "grade", str(folder), "--out", str(out), "--jobs", "2"]
    rng = random.Random()
    first_commit: dict[str, str] = {}  # student -> run id of the result that first appeared

    # Three kill points: after a random number of commits (0 = while starting), plus a random delay.
    for target in sorted(rng.sample(range(9), 3)):
        process = subprocess.Popen(command, env=env, start_new_session=True,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while _count_lines(commits) < target and process.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.2))
        assert process.poll() is None, "the batch finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert _reap_group(process.pid) == [], "a killed batch left grader processes running"
        _record_first_commits(out, students, first_commit)
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    _record_first_commits(out, students, first_commit)

    assert finished.returncode == 0, finished.stderr
    assert "failed 0 of 12" in finished.stdout
    committed = [line.split("\t")[0] for line in commits.read_text().splitlines()]
    assert sorted(committed) == students  # each committed once over all runs: nothing lost, nothing doubled
    result_files = sorted(out.glob("*/results.json"))
    assert [p.parent.name for p in result_files] == students
    assert not list(out.glob("*/.results.json.*.partial"))
    for student in students:  # a result, once committed, was never graded again by a later run
        assert batch.read_record(out / student / "results.json")["run_id"] == first_commit[student]
    assert [row["student_id"] for row in read_csv(out / "grades.csv")] == students


def _count_lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def _record_first_commits(out: Path, students: list[str], first_commit: dict[str, str]) -> None:
    for student in students:
        record = batch.read_record(out / student / "results.json")
        if record and student not in first_commit:
            first_commit[student] = record["run_id"]


def _reap_group(pgid: int) -> list[int]:
    """Wait (briefly) for the killed run's workers to go, as they should with their parent; kill and
    return any that did not."""
    deadline = time.monotonic() + 5
    while _live_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = _live_members(pgid)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    return left


def _live_members(pgid: int) -> list[int]:
    """Processes of the group that are not zombies (a zombie waits for init to reap it; it runs nothing)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


# ---------------------------------------------------------------- the real engine, end to end

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "submitted"


def test_a_real_batch_leaves_torch_to_its_workers(tmp_path, names_file):
    # The workers render each feedback page (batch/worker.grade): the main process imports no torch, which cost it
    # 2 s of CPU at its first commit and a slow interpreter teardown at the end.
    notebook = tmp_path / "class" / "ada.ipynb"
    notebook.parent.mkdir()
    notebook.write_bytes((EXAMPLES / "ada" / "backprop_ninja" / "backprop_ninja.ipynb").read_bytes())
    script = ("import runpy, sys\nsys.argv = ['backprop_ninja', 'grade', sys.argv[1], '--out', sys.argv[2], '--jobs', '1']\n"
              "try:\n    runpy.run_module('backprop_ninja', run_name='__main__')\nexcept SystemExit as done:\n"
              "    print('exit', done.code, 'torch', 'torch' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script, str(notebook.parent), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "BACKPROP_NINJA_NAMES": str(names_file)})
    assert done.stdout.strip().splitlines()[-1] == "exit 0 torch False", done.stdout + done.stderr[-2000:]
    page = (tmp_path / "out" / "ada" / "feedback.html").read_text()
    assert "<b>32 / 32</b>" in page and "five sets of inputs" in page


def test_cli_grades_an_nbgrader_tree_with_the_real_engine_and_resumes(tmp_path, names_file, capsys):
    from backprop_ninja.cli import main
    from backprop_ninja.grade.engine import grade_notebook

    tree = tmp_path / "submitted"
    for student in ("ada", "ben", "cleo"):
        notebook = EXAMPLES / student / "backprop_ninja" / "backprop_ninja.ipynb"
        target = tree / student / "backprop_ninja" / "backprop_ninja.ipynb"
        target.parent.mkdir(parents=True)
        target.write_bytes(notebook.read_bytes())
    corrupt = tree / "zed" / "backprop_ninja" / "backprop_ninja.ipynb"
    corrupt.parent.mkdir(parents=True)
    corrupt.write_bytes(b"\x00\x01 definitely not json")
    out = tmp_path / "out"

    assert main(["grade", str(tree), "--out", str(out), "--jobs", "2"]) == batch.EXIT_SOME_NOT_GRADED
    assert "graded 4, already done 0, failed 1 of 4" in capsys.readouterr().out

    rows = {row["student_id"]: row for row in read_csv(out / "grades.csv")}
    assert rows["ada"]["total"] == rows["ada"]["max"] and rows["ada"]["error"] == ""
    assert rows["cleo"]["total"] == "0" and rows["cleo"]["ex1_probs_status"] == "missing"
    assert rows["zed"]["total"] == "0" and rows["zed"]["error"]
    ben = grade_notebook(tree / "ben" / "backprop_ninja" / "backprop_ninja.ipynb")  # the same as one at a time
    assert [float(rows["ben"][v.unit]) for v in ben.verdicts] == [v.points for v in ben.verdicts]
    assert [rows["ben"][f"{v.unit}_status"] for v in ben.verdicts] == [v.status for v in ben.verdicts]
    gradescope = json.loads((out / "ben" / "results.json").read_text())
    assert gradescope["score"] == ben.score and len(gradescope["tests"]) == len(ben.verdicts)
    feedback = (out / "ben" / "feedback.html").read_text()  # each student also gets the feedback page
    assert f"<b>{ben.score:g} / {ben.max_score:g}</b>" in feedback and "<svg" in feedback
    assert "could not be graded" in (out / "zed" / "feedback.html").read_text()

    assert main(["grade", str(tree), "--out", str(out), "--jobs", "2"]) == batch.EXIT_SOME_NOT_GRADED
    assert "graded 0, already done 4, failed 1 of 4" in capsys.readouterr().out


def test_only_the_forkserver_skips_its_teardown(tmp_path):
    # batch/quick_exit.py ends the forkserver with os._exit; anywhere else (pytest itself!) it must do nothing,
    # or a process's exit status would be lost.
    plain = subprocess.run([sys.executable, "-c", "import sys, backprop_ninja.batch.quick_exit as q\n"
                            "print(q.REGISTERED)\nsys.exit(3)"], capture_output=True, text=True, timeout=60)
    assert (plain.returncode, plain.stdout.strip()) == (3, "False")
    script = ("import multiprocessing as mp\n"
              "def registered():\n    import backprop_ninja.batch.quick_exit as q\n    return q.REGISTERED\n"
              "if __name__ == '__main__':\n"
              "    ctx = mp.get_context('forkserver')\n"
              "    ctx.set_forkserver_preload(['backprop_ninja.batch.quick_exit'])\n"
              "    with ctx.Pool(1) as pool:\n        print(pool.apply(registered))\n")
    (tmp_path / "probe.py").write_text(script)
    served = subprocess.run([sys.executable, str(tmp_path / "probe.py")], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert (served.returncode, served.stdout.strip()) == (0, "True"), served.stderr
