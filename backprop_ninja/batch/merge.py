"""`backprop-ninja merge OUT [--report DIR]`: grades.csv of a class graded in shards (`grade --shard K/N`).

The class is what the shards' manifests say (batch/shards.py); a student is done when their results.json holds a
record with the key their shard computed, and it is not the machine's fault. Everyone else is named, with the
commands that grade them; running those shards again and merging again completes grades.csv. Until then their rows
say they are not graded yet. Safe to run at any time: it refuses while a shard or a whole-class batch is running.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from backprop_ninja.batch import resume, shards
from backprop_ninja.batch.faults import is_environment_fault
from backprop_ninja.batch.records import RESULTS_NAME, read_record, write_grades_csv
from backprop_ninja.batch.run import EXIT_ALL_GRADED, EXIT_BATCH_FAILED, EXIT_SOME_NOT_GRADED, STATE_DIR
from backprop_ninja.batch.submission import BatchError, Submission
from backprop_ninja.export.safe_text import terminal_text
from backprop_ninja.lateness.columns import LateBook
from backprop_ninja.lateness.options import add_lateness_arguments, late_book

SHOWN_NAMES = 20                       # missing students named on the terminal; the rest are counted


@dataclass
class MergeSummary:
    count: int                                   # N of the shards merged
    students: int
    failed: int = 0                              # rows graded as "could not be graded" (the student's file)
    missing: dict[int, list[str]] = field(default_factory=dict)  # shard -> students to (re)grade
    not_run: list[int] = field(default_factory=list)             # shards that left no manifest
    problems: list[str] = field(default_factory=list)
    source: str = ""
    csv_path: Path | None = None

    @property
    def missing_count(self) -> int:
        return sum(len(students) for students in self.missing.values())

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_NOT_GRADED if self.missing or self.not_run or self.failed else EXIT_ALL_GRADED


def merge(out_dir: Path, lateness: LateBook | None = None) -> MergeSummary:
    """Write out_dir/grades.csv from every shard's results (with the lateness columns `grade` writes); raises
    BatchError when there is nothing to merge."""
    out_dir = Path(out_dir)
    state = out_dir / STATE_DIR
    if not state.is_dir():
        raise BatchError(f"{out_dir} has no {STATE_DIR}/ folder: nothing was graded into it. Grade with "
                         f"`backprop-ninja grade CLASS --shard K/N --out {out_dir}` first.")
    with resume.exclusive_lock(state / "lock", out_dir):
        manifests, problems = shards.read_manifests(state)
        if not manifests:
            raise BatchError(f"{out_dir} holds no shard's manifest ({STATE_DIR}/{shards.SHARDS_DIR}/K-of-N/"
                             f"{shards.MANIFEST_NAME}), so there is nothing to merge. Grade with `backprop-ninja "
                             f"grade CLASS --shard K/N --out {out_dir}`; a run without --shard writes grades.csv "
                             f"itself.")
        # The newest manifest says how the class is split now; older splits of the same folder are history.
        count = max(manifests, key=lambda m: m.written_ns).shard.count
        current = sorted((m for m in manifests if m.shard.count == count), key=lambda m: m.written_ns)
        class_subs: dict[str, Submission] = {}
        for manifest in current:  # the newest sighting of each student wins (a resubmission's new source)
            class_subs.update({s.student_id: s for s in manifest.students})
        keys = {student: key for m in current for student, key in m.keys.items()}
        subs = [class_subs[student] for student in sorted(class_subs)]
        summary = MergeSummary(count=count, students=len(subs), problems=problems, source=current[-1].source)
        ran = {m.shard.index for m in current}
        summary.not_run = [index for index in range(1, count + 1) if index not in ran]
        for sub in subs:
            record = read_record(out_dir / sub.student_id / RESULTS_NAME)
            if _is_done(record, keys.get(sub.student_id)):
                summary.failed += bool(record.get("error"))
            else:
                summary.missing.setdefault(shards.shard_of(sub.student_id, count), []).append(sub.student_id)
        resume.remove_partial_files(out_dir)  # no shard is running: any temp file left is a dead run's
        summary.csv_path = write_grades_csv(out_dir, subs, lateness=lateness)
        return summary


def _is_done(record: dict | None, expected_key: str | None) -> bool:
    """Graded, and by the run its shard last made (an older grade of a changed notebook is not done)."""
    if record is None or is_environment_fault(record):
        return False
    return expected_key is None or record.get("key") == expected_key


def describe(summary: MergeSummary, out_dir: Path) -> tuple[str, list[str]]:
    """(the line for stdout, the lines for stderr: who is missing and the commands that grade them)."""
    graded = summary.students - summary.missing_count
    line = (f"merged {graded} of {summary.students} students from {summary.count} shards "
            f"({summary.failed} could not be graded) -> {summary.csv_path}")
    notes = list(summary.problems)
    if summary.missing:
        names = sorted(student for students in summary.missing.values() for student in students)
        shown = ", ".join(names[:SHOWN_NAMES]) + (f" and {len(names) - SHOWN_NAMES} more"
                                                 if len(names) > SHOWN_NAMES else "")
        notes.append(f"{len(names)} students are not graded yet (their rows say so): {shown}")
    redo = sorted(set(summary.missing) | set(summary.not_run))
    if redo:
        notes.append("Grade them by running these shards (again), then `backprop-ninja merge` again:")
        notes += [f"  backprop-ninja grade {shlex.quote(summary.source)} --shard {index}/{summary.count} "
                  f"--out {shlex.quote(str(out_dir))}" for index in redo]
    return line, notes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="the --out folder the shards graded into")
    parser.add_argument("--report", metavar="DIR", default=None,
                        help="also write the cohort report (as `backprop-ninja report OUT --out DIR`)")
    add_lateness_arguments(parser)  # grades.csv's lateness columns are filled here, as `grade` fills them


def run(args: argparse.Namespace) -> int:
    out_dir = Path(args.out)
    try:
        summary = merge(out_dir, late_book(args))
    except BatchError as error:
        print(f"merge: {terminal_text(error)}", file=sys.stderr)
        return EXIT_BATCH_FAILED
    line, notes = describe(summary, out_dir)
    for note in notes:
        print(f"merge: {terminal_text(note)}", file=sys.stderr)
    print(terminal_text(line))
    if args.report:
        from backprop_ninja.report import write_report  # matplotlib: only when asked

        try:
            written = write_report(out_dir, Path(args.report))
        except FileNotFoundError as error:  # not one student graded yet
            print(f"merge: no report: {terminal_text(error)}", file=sys.stderr)
            return EXIT_BATCH_FAILED
        print(f"report -> {terminal_text(written['html'])}")
    return summary.exit_code
