"""The batch's lateness options: `--course-config` (the nbgrader_config.py with c.Lateness) and
`--submission-times` (a CSV of student_id,submitted_at). Both are read before anything is graded, so a bad value
stops the batch at once, naming the file and the line or setting."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from backprop_ninja.batch.submission import BatchError
from backprop_ninja.lateness import CONFIG_NAME

if TYPE_CHECKING:
    from backprop_ninja.lateness.columns import LateBook

UTC = ZoneInfo("UTC")  # submission times without a zone, when the course sets none


def add_lateness_arguments(parser) -> None:
    parser.add_argument("--course-config", default=None, metavar="PATH",
                        help=f"the nbgrader_config.py whose c.Lateness settings (due date, penalty, extensions) "
                             f"fill grades.csv's lateness columns (default: ./{CONFIG_NAME} if there is one)")
    parser.add_argument("--submission-times", default=None, metavar="CSV",
                        help="a CSV with the columns student_id,submitted_at; where it has no row for a student, "
                             "the timestamp.txt nbgrader's exchange wrote beside the notebook is used")


def late_book(args) -> LateBook:
    """What grades.csv needs to fill its lateness columns; raises BatchError naming the file and the fix."""
    # here, not at the top: grading one notebook adds these arguments and must not pay for traitlets and dateutil
    from backprop_ninja.lateness.columns import LateBook
    from backprop_ninja.lateness.settings import LatenessConfigError, load_course_file
    from backprop_ninja.lateness.submitted import SubmissionTimesError, read_times_csv

    config = getattr(args, "course_config", None)
    path = Path(config) if config else Path(CONFIG_NAME)
    if config is None and not path.is_file():
        path = None  # no course config here: no due date, the columns stay empty
    try:
        policy = load_course_file(path) if path is not None else None
        times_file = getattr(args, "submission_times", None)
        if times_file is None:
            return LateBook(policy)
        times = read_times_csv(Path(times_file), policy.zone if policy else UTC)
    except (LatenessConfigError, SubmissionTimesError) as error:
        raise BatchError(str(error)) from None
    if policy is None:
        print(f"grade: --submission-times is read but not used: no due date is set (c.Lateness.due in "
              f"{path or CONFIG_NAME}).", file=sys.stderr)
    return LateBook(policy, times)
