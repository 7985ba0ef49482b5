"""Due dates and late penalties: the rule, its settings in nbgrader_config.py, nbgrader's late-submission plugin
(on a real gradebook, and in one real `nbgrader autograde` run), and the kit's batch (timestamp.txt and a CSV).

The batch tests grade with test_batch.py's stand-in engine (4 points for a right notebook), so they check the
lateness columns in seconds; lateness is applied when grades.csv is written, whatever graded the notebooks.
"""
from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from nbformat.v4 import new_notebook
from traitlets.config import Config

from backprop_ninja import batch
from backprop_ninja.assign import ASSIGNMENT
from backprop_ninja.lateness.rule import DAY_SECONDS, PenaltyPolicy, assess, penalty_points
from backprop_ninja.lateness.settings import LatenessConfigError, course_policy, load_course_file
from test_batch import grade_log, read_csv, write_fake_notebook  # noqa: F401 (grade_log is a fixture)

DUE = datetime(2026, 12, 1, 23, 59, tzinfo=timezone.utc)
TEN_PERCENT = PenaltyPolicy(per_day=0.1, cap=0.5, grace_seconds=15 * 60)
LATE_COLUMNS = ["submitted_at", "due", "late_by", "late_seconds", "penalty", "total_after_penalty"]


def late(**delta) -> datetime:
    return DUE + timedelta(**delta)


# ---------------------------------------------------------------- the rule

def test_on_time_and_within_the_grace_period_cost_nothing():
    assert assess(DUE, DUE, None, TEN_PERCENT, 8, 10).penalty == 0
    early = assess(late(hours=-3), DUE, None, TEN_PERCENT, 8, 10)
    assert (early.late_seconds, early.penalty) == (0, 0)
    graced = assess(late(minutes=15), DUE, None, TEN_PERCENT, 8, 10)
    assert (graced.late_seconds, graced.penalty) == (900, 0)


def test_every_started_day_costs_a_fraction_of_the_maximum_counted_from_the_due_date():
    assert assess(late(minutes=16), DUE, None, TEN_PERCENT, 8, 10).penalty == 1   # past the grace: day 1
    assert assess(late(days=1), DUE, None, TEN_PERCENT, 8, 10).penalty == 1      # exactly one day
    assert assess(late(days=1, seconds=1), DUE, None, TEN_PERCENT, 8, 10).penalty == 2  # the second day started
    assert penalty_points(2.5 * DAY_SECONDS, 40, 50, TEN_PERCENT) == 15         # 3 days of 10 % of 50


def test_the_penalty_is_capped_and_never_more_than_the_points_earned():
    assert assess(late(days=30), DUE, None, TEN_PERCENT, 8, 10).penalty == 5   # the cap: half the maximum
    assert assess(late(days=30), DUE, None, TEN_PERCENT, 3, 10).penalty == 3   # only what was earned
    assert penalty_points(DAY_SECONDS, -2, 10, TEN_PERCENT) == 0                # never negative


def test_an_extension_moves_the_due_date_by_extra_time_or_replaces_it():
    extra = assess(late(hours=30), DUE, timedelta(days=1), TEN_PERCENT, 8, 10)
    assert (extra.due, extra.late_seconds, extra.penalty) == (late(days=1), 6 * 3600, 1)
    personal = assess(late(days=2), DUE, late(days=3), TEN_PERCENT, 8, 10)
    assert (personal.due, personal.late_seconds, personal.penalty) == (late(days=3), 0, 0)


# ---------------------------------------------------------------- the settings

def lateness_config(**settings) -> Config:
    config = Config()
    for name, value in {"due": "2026-12-01 23:59", **settings}.items():
        setattr(config.Lateness, name, value)
    return config


def test_settings_read_dates_in_the_course_timezone_and_both_kinds_of_extension(tmp_path):
    (tmp_path / "extensions.csv").write_text("student_id,extension\r\ncleo,2026-12-04 09:00 UTC\r\n\r\n")
    policy = course_policy(lateness_config(timezone="Europe/Berlin", grace_minutes=10, penalty_per_day=0.2,
                                           max_penalty=0.6, extensions={"ada": "1d 12h", "ben": "2026-12-03 12:00"},
                                           extensions_file="extensions.csv"), tmp_path)
    assert policy.due == datetime(2026, 12, 1, 22, 59, tzinfo=timezone.utc)  # 23:59 in Berlin (UTC+1)
    assert policy.policy == PenaltyPolicy(per_day=0.2, cap=0.6, grace_seconds=600)
    assert policy.extension_for("ada") == timedelta(days=1, hours=12)
    assert policy.extension_for("ben") == datetime(2026, 12, 3, 11, tzinfo=timezone.utc)
    assert policy.extension_for("cleo") == datetime(2026, 12, 4, 9, tzinfo=timezone.utc)
    assert policy.extension_for("dora") is None
    assert course_policy(Config(), tmp_path) is None  # no due date: no penalties


@pytest.mark.parametrize("settings, named", [
    ({"penalty_per_day": 1.5}, "c.Lateness.penalty_per_day = 1.5"),
    ({"max_penalty": -0.1}, "c.Lateness.max_penalty"),
    ({"grace_minutes": -5.0}, "c.Lateness.grace_minutes"),
    ({"timezone": "Mars/Olympus"}, "c.Lateness.timezone = 'Mars/Olympus'"),
    ({"due": "next friday"}, "c.Lateness.due"),
    ({"due": "12-01"}, "c.Lateness.due"),  # no year: dateutil would quietly take this year's
    ({"penalty_per_day": "10%"}, "penalty_per_day"),
    ({"extensions": {"ada": "a fortnight"}}, "c.Lateness.extensions['ada']"),
    ({"extensions": {"ada": "2026-11-01 12:00"}}, "personal due date of ada"),
    ({"extensions_file": "missing.csv"}, "c.Lateness.extensions_file"),
])
def test_a_bad_setting_is_refused_naming_the_file_and_the_setting(tmp_path, settings, named):
    with pytest.raises(LatenessConfigError) as error:
        course_policy(lateness_config(**settings), tmp_path)
    assert "nbgrader_config.py" in str(error.value) and named in str(error.value)


@pytest.mark.parametrize("text, named", [
    ("student,extension\nada,2d\n", "line 1"),
    ("student_id,extension\nada,2d\nben,soon\n", "line 3"),
    ("student_id,extension\nada,2d\nada,3d\n", "line 3: ada already has an extension on line 2"),
    ("student_id,extension\nben,2d\n", "line 2: ben also has an extension"),
])
def test_a_bad_extensions_file_is_refused_naming_the_file_and_the_line(tmp_path, text, named):
    (tmp_path / "extensions.csv").write_text(text)
    with pytest.raises(LatenessConfigError) as error:
        course_policy(lateness_config(extensions_file="extensions.csv", extensions={"ben": "1d"}), tmp_path)
    assert "extensions.csv" in str(error.value) and named in str(error.value)


def test_the_batch_runs_a_config_file_only_when_it_sets_lateness(tmp_path):
    from backprop_ninja.assign import REPO

    assert load_course_file(REPO / "nbgrader_config.py") is None  # the shipped config sets no due date
    config = tmp_path / "nbgrader_config.py"
    config.write_text("import os\nc = get_config()\nos.environ['LATENESS_TEST_MARK'] = '1'\n"
                      "c.Lateness.due = '2026-12-01 23:59:00 UTC'\n")
    assert load_course_file(config).due == DUE
    assert "LATENESS_TEST_MARK" not in os.environ  # the file's changes to the environment are undone
    config.write_text("c = get_config()\nc.Lateness.due = undefined_name\n")
    with pytest.raises(LatenessConfigError, match="nbgrader_config.py failed to load .NameError"):
        load_course_file(config)


# ---------------------------------------------------------------- nbgrader's plugin

def test_the_course_config_puts_the_plugin_into_nbgraders_chain():
    from nbgrader.preprocessors import AssignLatePenalties

    from traitlets.config import Application

    from backprop_ninja.assign import REPO
    from backprop_ninja.lateness.nbgrader_side import CourseLatePenalty, SyncDueDate

    app = Application()
    app.load_config_file("nbgrader_config", path=str(REPO))  # as nbgrader loads it from the course folder
    config = app.config
    chain = config.Autograde.autograde_preprocessors
    assert chain.index(SyncDueDate) + 1 == chain.index(AssignLatePenalties)
    assert config.AssignLatePenalties.plugin_class is CourseLatePenalty


@pytest.fixture
def gradebook_url(tmp_path, monkeypatch):
    """A real nbgrader gradebook: one notebook of 10 points, ada submitted at the given time with 7 of them."""
    from nbgrader.api import Gradebook

    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))  # alembic
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    with Gradebook(url) as gradebook:
        gradebook.add_assignment(ASSIGNMENT)
        gradebook.add_notebook(ASSIGNMENT, ASSIGNMENT)
        for cell, max_score in (("test_a", 4), ("test_b", 6)):
            gradebook.add_grade_cell(cell, ASSIGNMENT, ASSIGNMENT, max_score=max_score, cell_type="code")
        gradebook.add_student("ada")
        gradebook.add_submission(ASSIGNMENT, "ada", timestamp="2026-12-03 10:00:00 UTC")
        for cell, points in (("test_a", 4), ("test_b", 3)):
            gradebook.find_grade(cell, ASSIGNMENT, ASSIGNMENT, "ada").auto_score = points
        gradebook.db.commit()
    return url


def run_late_steps(url: str, config: Config):
    """SyncDueDate then nbgrader's own AssignLatePenalties, as in the autograde chain; the gradebook's view after."""
    from nbgrader.api import Gradebook
    from nbgrader.preprocessors import AssignLatePenalties

    from backprop_ninja.lateness.nbgrader_side import CourseLatePenalty, SyncDueDate

    config.AssignLatePenalties.plugin_class = CourseLatePenalty
    resources = {"nbgrader": {"notebook": ASSIGNMENT, "assignment": ASSIGNMENT, "student": "ada", "db_url": url}}
    for step in (SyncDueDate, AssignLatePenalties):
        step(config=config).preprocess(new_notebook(), resources)
    with Gradebook(url) as gradebook:
        submission = gradebook.find_submission(ASSIGNMENT, "ada")
        notebook = gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, "ada")
        return submission.duedate, submission.total_seconds_late, notebook.late_submission_penalty


def test_nbgraders_gradebook_gets_the_due_date_the_extension_and_the_rules_penalty(gradebook_url):
    due, seconds, penalty = run_late_steps(gradebook_url, lateness_config(extensions={"ada": "12h"}))
    assert due == datetime(2026, 12, 2, 11, 59)             # naive UTC, as nbgrader stores it: due + 12 h
    assert seconds == 22 * 3600 + 60                           # handed in 2026-12-03 10:00
    assert penalty == 1.0                                      # one started day: 10 % of the 10 points

    due, seconds, penalty = run_late_steps(gradebook_url, lateness_config(due="2026-12-04 00:00"))
    assert (due, seconds, penalty) == (datetime(2026, 12, 4), 0, None)  # a later due date: no longer late


# ---------------------------------------------------------------- the batch

CLASS = {"ada": "2026-12-02 10:00:00.000000 UTC",   # 10 h late: one day, 10 % of 4 points
         "ben": "2026-12-01 23:00:00 -0300",          # 02:00 UTC, within the 3 h he was given: on time
         "cleo": None,                                # no timestamp.txt: the CSV says when
         "dora": None}                                # neither: unknown


def nbgrader_tree(root: Path) -> Path:
    for student, stamp in CLASS.items():
        folder = root / "submitted" / student / ASSIGNMENT
        write_fake_notebook(folder / f"{ASSIGNMENT}.ipynb", "right")
        if stamp:
            (folder / "timestamp.txt").write_text(stamp + "\n")
    (root / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        "c.Lateness.due = '2026-12-01 23:59'\n"
        "c.Lateness.penalty_per_day = 0.1\n"
        "c.Lateness.extensions = {'ben': '3h'}\n")
    return root


def grade_class(args: list[str], monkeypatch, cwd: Path) -> int:
    from backprop_ninja.cli import main

    monkeypatch.setattr(batch.run, "DEFAULT_GRADER", "test_batch")  # the stand-in engine; the rest is real
    monkeypatch.chdir(cwd)
    return main(["grade", *args, "--jobs", "1"])


def test_batch_fills_lateness_from_timestamp_txt_and_a_csv_of_times(tmp_path, grade_log, monkeypatch, capsys):
    course = nbgrader_tree(tmp_path / "course")
    times = tmp_path / "times.csv"
    times.write_text("student_id,submitted_at,comment\ncleo,2026-12-04 00:30,via the platform\n"
                     "ada,2026-12-01 12:00:00 UTC,wins over timestamp.txt\n")
    out = tmp_path / "out"

    assert grade_class([str(course), "--out", str(out)], monkeypatch, course) == batch.EXIT_ALL_GRADED
    rows = {row["student_id"]: row for row in read_csv(out / "grades.csv")}
    assert list(rows["ada"])[-len(LATE_COLUMNS):] == LATE_COLUMNS
    ada = rows["ada"]
    assert [ada[c] for c in LATE_COLUMNS] == ["2026-12-02T10:00:00Z", "2026-12-01T23:59:00Z", "10 h 1 min", "36060",
                                              "0.4", "3.6"]
    assert ada["total"] == "4"  # total keeps its meaning: the points the answers earned
    assert [rows["ben"][c] for c in ("submitted_at", "due", "late_by", "penalty", "total_after_penalty")] == [
        "2026-12-02T02:00:00Z", "2026-12-02T02:59:00Z", "on time", "0", "4"]
    assert rows["cleo"]["late_by"].startswith("submission time unknown") and rows["cleo"]["penalty"] == "0"
    assert "2 of 4 submissions have no known submission time" in capsys.readouterr().err

    # A CSV of times, and a changed due date: grades.csv is rewritten, nothing is graded again.
    config = course / "nbgrader_config.py"
    config.write_text(config.read_text().replace("23:59", "22:00") + "c.Lateness.max_penalty = 0.2\n")
    assert grade_class([str(course), "--out", str(out), "--submission-times", str(times)], monkeypatch,
                       course) == batch.EXIT_ALL_GRADED
    assert "graded 0, already done 4" in capsys.readouterr().out
    rows = {row["student_id"]: row for row in read_csv(out / "grades.csv")}
    assert (rows["ada"]["late_seconds"], rows["ada"]["penalty"]) == ("0", "0")   # the CSV's time: on time
    assert [rows["cleo"][c] for c in ("submitted_at", "late_by", "penalty", "total_after_penalty")] == [
        "2026-12-04T00:30:00Z", "2 d 2 h 30 min", "0.8", "3.2"]                 # 3 days started, capped at 20 %
    assert rows["dora"]["submitted_at"] == "" and rows["dora"]["penalty"] == "0"


def test_batch_without_a_due_date_leaves_the_columns_empty(tmp_path, grade_log, monkeypatch):
    course = nbgrader_tree(tmp_path / "course")
    (course / "nbgrader_config.py").unlink()
    out = tmp_path / "out"

    assert grade_class([str(course), "--out", str(out)], monkeypatch, tmp_path) == batch.EXIT_ALL_GRADED
    for row in read_csv(out / "grades.csv"):
        assert [row[c] for c in LATE_COLUMNS] == ["", "", "", "", "", row["total"]]


def test_a_students_bad_timestamp_only_leaves_that_students_time_unknown(tmp_path, grade_log, monkeypatch):
    course = nbgrader_tree(tmp_path / "course")
    stamp = course / "submitted" / "ada" / ASSIGNMENT / "timestamp.txt"
    stamp.write_text("=cmd|' /C calc'!A0\n")
    ben_stamp = course / "submitted" / "ben" / ASSIGNMENT / "timestamp.txt"
    ben_stamp.unlink()
    ben_stamp.symlink_to(stamp)  # a link is never followed
    out = tmp_path / "out"

    assert grade_class([str(course), "--out", str(out), "--course-config", str(course / "nbgrader_config.py")],
                       monkeypatch, tmp_path) == batch.EXIT_ALL_GRADED
    rows = {row["student_id"]: row for row in read_csv(out / "grades.csv")}
    assert rows["ada"]["late_by"].startswith("timestamp.txt does not hold a time")
    assert rows["ben"]["late_by"].startswith("timestamp.txt unreadable")
    assert rows["ada"]["penalty"] == rows["ben"]["penalty"] == "0"


@pytest.mark.parametrize("times_text, named", [
    ("student,time\nada,2026-12-02\n", "times.csv line 1"),
    ("student_id,submitted_at\nada,2026-12-02\nben,yesterday\n", "times.csv line 3"),
    ("student_id,submitted_at\nada,2026-12-02\nada,2026-12-03\n", "times.csv line 3: ada already has"),
])
def test_a_bad_times_csv_stops_the_batch_before_grading_naming_the_line(tmp_path, grade_log, monkeypatch, capsys,
                                                                       times_text, named):
    course = nbgrader_tree(tmp_path / "course")
    (tmp_path / "times.csv").write_text(times_text)
    out = tmp_path / "out"

    code = grade_class([str(course), "--out", str(out), "--submission-times", str(tmp_path / "times.csv")],
                       monkeypatch, course)
    assert code == batch.EXIT_BATCH_FAILED and named in capsys.readouterr().err
    assert grade_log.read_text() == "" and not (out / "grades.csv").exists()


def test_a_bad_course_config_stops_the_batch_naming_the_setting(tmp_path, grade_log, monkeypatch, capsys):
    course = nbgrader_tree(tmp_path / "course")
    (course / "nbgrader_config.py").write_text("c = get_config()\nc.Lateness.due = '2026-12-01'\n"
                                               "c.Lateness.penalty_per_day = 10\n")
    code = grade_class([str(course), "--out", str(tmp_path / "out")], monkeypatch, course)
    assert code == batch.EXIT_BATCH_FAILED
    assert "nbgrader_config.py: c.Lateness.penalty_per_day = 10" in capsys.readouterr().err
    assert grade_log.read_text() == ""


# ---------------------------------------------------------------- nbgrader and the batch, for real

REAL_SETTINGS = """
c.Lateness.due = "2026-12-01 23:59"
c.Lateness.penalty_per_day = 0.1
c.Lateness.extensions = {"b_extended": "2d"}
"""
HANDED_IN = {"a_late": "2026-12-03 10:00:00.000000 UTC",       # 1 d 10 h late: two started days, 20 %
             "b_extended": "2026-12-03 10:00:00.000000 UTC"}   # the same time, within a 2-day extension


def test_real_autograde_and_the_batch_take_off_the_same_penalty(tmp_path, names_file):
    """One real `nbgrader autograde` (about 20 s a student) and the kit's batch with the real engine, side by side,
    on the same course folder and its one nbgrader_config.py."""
    from nbgrader.api import Gradebook

    from backprop_ninja.assign import REPO
    from nbgrader_course import (COURSE_ID, course_env, finish, hand_in, make_course, read_notebook, start,
                                 start_nbgrader, stop)

    root = make_course(tmp_path / "course", names_file)
    with open(root / "nbgrader_config.py", "a") as config:
        config.write(REAL_SETTINGS)
    right = read_notebook(REPO / "examples" / "submitted" / "ada" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb")
    for student, stamp in HANDED_IN.items():
        (hand_in(root, student, right).parent / "timestamp.txt").write_text(stamp + "\n")
    env = course_env(names_file)
    out = tmp_path / "out"
    runs = [start_nbgrader(root, env, "autograde", ASSIGNMENT, "--force"),
            start([sys.executable, "-m", "backprop_ninja", "grade", str(root / "submitted"), "--out", str(out),
                   "--jobs", "1", "--course-config", str(root / "nbgrader_config.py")], root, env)]
    try:
        for run in runs:
            finish(run)
    finally:
        stop(runs)

    rows = {row["student_id"]: row for row in read_csv(out / "grades.csv")}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", course_id=COURSE_ID) as gradebook:
        for student in HANDED_IN:
            notebook = gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, student)
            row = rows[student]
            assert float(row["total"]) == notebook.score == notebook.max_score  # full marks before lateness
            assert float(row["penalty"]) == (notebook.late_submission_penalty or 0)
            assert float(row["total_after_penalty"]) == notebook.score - (notebook.late_submission_penalty or 0)
        late = gradebook.find_submission_notebook(ASSIGNMENT, ASSIGNMENT, "a_late")
        assert late.late_submission_penalty == pytest.approx(0.2 * late.max_score)
        assert gradebook.find_submission(ASSIGNMENT, "b_extended").total_seconds_late == 0
    assert rows["a_late"]["late_by"] == "1 d 10 h 1 min" and rows["b_extended"]["late_by"] == "on time"
