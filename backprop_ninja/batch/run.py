"""run_batch: find the submissions, skip those already graded, grade the rest with the pool, commit each
result (the only writer), then write grades.csv. No torch here: the workers have it."""
from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from backprop_ninja.batch import resume, shards
from backprop_ninja.batch.faults import is_environment_fault
from backprop_ninja.batch.inputs import discover
from backprop_ninja.batch.pool import DEFAULT_WATCHDOG_SECONDS, grade_with_pool
from backprop_ninja.batch.records import RECORD_KEY, RESULTS_NAME, make_record, read_record, write_grades_csv, \
    write_json_atomically
from backprop_ninja.batch.submission import Submission
from backprop_ninja.export.feedback import FEEDBACK_NAME, to_html, write_page
from backprop_ninja.grade.verdict import SubmissionResult
from backprop_ninja.lateness.columns import LateBook

STATE_DIR = ".batch"                   # inside --out: lock, commit log, worker log, unzipped input
DEFAULT_GRADER = "backprop_ninja.batch.worker"  # module with warm_up(limits) and grade(path, limits)
EXIT_ALL_GRADED = 0
EXIT_BATCH_FAILED = 1
EXIT_SOME_NOT_GRADED = 3


@dataclass
class BatchSummary:
    graded: int = 0         # graded in this run
    skipped: int = 0        # already graded by this grader version
    failed: int = 0         # rows with a submission-level error (this run and earlier ones)
    environment: int = 0    # of those, rows the machine failed (environment faults): the next run grades them
    total: int = 0
    seconds: float = 0.0
    csv_path: Path | None = None
    shard: str = ""         # "K/N" for a shard's run, which writes no grades.csv (`backprop-ninja merge` does)
    out_dir: Path | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_SOME_NOT_GRADED if self.failed else EXIT_ALL_GRADED

    def line(self) -> str:
        machine = (f" ({self.environment} of them the machine's fault, not the students': run again to grade "
                   f"them)" if self.environment else "")
        counts = (f"graded {self.graded}, already done {self.skipped}, failed {self.failed}{machine} of {self.total} "
                  f"submissions in {self.seconds:.1f} s")
        if self.shard:
            return f"shard {self.shard}: {counts}; once every shard has run: backprop-ninja merge {self.out_dir}"
        return f"{counts} -> {self.csv_path}"

def run_batch(source: Path, out_dir: Path, jobs: int | None = None, *, limits: dict | None = None,
              grader_module: str | None = None, start_method: str = "forkserver",
              watchdog_seconds: float = DEFAULT_WATCHDOG_SECONDS, id_pattern: str | None = None,
              retry_failed: bool = False, progress: bool = True,
              shard: shards.Shard | None = None, lateness: LateBook | None = None) -> BatchSummary:
    """Grade every submission under `source` into `out_dir`; resumable. Raises BatchError if it cannot run.
    With `shard`, only that slice of the class, beside the other shards (batch/shards.py), and no grades.csv."""
    started = time.monotonic()
    grader_module = grader_module or DEFAULT_GRADER
    out_dir = Path(out_dir)
    state = out_dir / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    limits = dict(limits or {})
    limits.setdefault("isolation", "required")  # part of the resume key: switching it regrades
    limits.setdefault("strict_rules", False)    # the rule policy too (engine.apply_rule_policy)
    limits.setdefault("shape", "strict")        # the shape policy (engine.apply_shape_policy)
    limits.setdefault("code", "allowlist")      # and the code policy (grade/allowlist.py)
    locked = shards.shard_locks(state, shard, out_dir) if shard else resume.exclusive_lock(state / "lock", out_dir)
    with locked as own_state:
        own_state = own_state if shard else state  # this run's commit log, workers' log and unpacked zip
        class_subs = discover(Path(source), own_state, id_pattern)
        subs = shard.select(class_subs) if shard else class_subs
        # a shard cleans up only its own students' temp files: the others' may be mid-write right now
        resume.remove_partial_files(out_dir, [s.student_id for s in subs] if shard else None)
        version = resume.grader_version()
        run_id = uuid.uuid4().hex[:12]
        keys = {s.student_id: resume.key_of(s, version, limits) for s in subs}
        if shard:
            shards.write_manifest(own_state, shard, Path(source), class_subs,
                                  {student: key for student, (key, _) in keys.items()})
        resume.recover_commit_log(own_state, out_dir, subs)
        todo = [s for s in subs if not resume.already_done(out_dir, s, keys[s.student_id][0], retry_failed)]
        summary = BatchSummary(skipped=len(subs) - len(todo), total=len(subs), shard=str(shard or ""),
                               out_dir=out_dir)

        def commit(sub: Submission, result: dict, gradescope: dict, units: list, pages: dict | None = None) -> None:
            key, content_hash = keys[sub.student_id]
            gradescope = dict(gradescope)
            gradescope["extra_data"] = dict(gradescope.get("extra_data") or {})
            gradescope["extra_data"][RECORD_KEY] = make_record(sub, key, version, content_hash, run_id,
                                                               result, units)
            # the feedback page first: once results.json exists, the submission counts as done
            page = (pages or {}).get(FEEDBACK_NAME)  # rendered by the worker; else here (a fault row, a stand-in grader)
            write_page(page or to_html(SubmissionResult.from_dict(result)), out_dir / sub.student_id)
            write_json_atomically(out_dir / sub.student_id / RESULTS_NAME, gradescope)
            resume.log_commit(own_state, sub.student_id, key, run_id)
            summary.graded += 1

        if todo:
            gradable = sum(1 for s in todo if not s.refused)
            jobs = max(1, min(jobs or os.cpu_count() or 1, gradable))
            grade_with_pool(todo, jobs, commit, grader_module, start_method, own_state / "workers.log",
                            limits, watchdog_seconds, progress, already=summary.skipped, total=len(subs))
        if not shard:
            summary.csv_path = write_grades_csv(out_dir, subs, lateness=lateness)
        records = [read_record(out_dir / s.student_id / RESULTS_NAME) or {} for s in subs]
        summary.failed = sum(1 for record in records if record.get("error"))
        summary.environment = sum(1 for record in records if is_environment_fault(record))
        summary.seconds = time.monotonic() - started
        return summary
