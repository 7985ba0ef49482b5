"""Throughput of `backprop-ninja grade FOLDER --jobs 2` against `nbgrader autograde`, on the same submissions.

    .venv/bin/python benchmarks/batch_vs_nbgrader.py --course . --n 200 --nbgrader-n 6

--course is an nbgrader course folder holding nbgrader_config.py and source/backprop_ninja/ (this repository
after `backprop-ninja assign`). Nothing in it is changed: the course is copied to a temporary folder, the
assignment generated there, and N submissions made by cycling the shipped example notebooks
(examples/submitted/*), each with its student id in the notebook metadata so every file is distinct.

The batch grades all N; nbgrader grades the first --nbgrader-n of them (it is much slower). Printed: wall time,
submissions/s, the ratio, the time extrapolated to 1,000 submissions, the peak memory of the largest process of
each (ru_maxrss of its children), and whether both gave the same points to every unit of every student graded by
both. --batch-only skips nbgrader (e.g. a real 1,000-submission run); --compare-isolation also grades them with
--no-isolation, right after, and prints the ratio. --baseline DIR grades the same submissions with another
checkout's batch (PYTHONPATH=DIR, e.g. `git worktree add /tmp/before16 4b0de4a`) right before this one, --rounds K
times each in turn, and prints each pair's ratio and whether both gave every unit of every student the same points
and status. Not a test: it only reports numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backprop_ninja.assign import ASSIGNMENT, REPO
from backprop_ninja.demo import nbgrader_points, results_points

GOAL_RATIO = 80.0              # issue 16 (it was 30x before)
GOAL_SECONDS_PER_1000 = 40.0   # issue 16, isolated on 2 cores (it was 60 s before)
# Runs a command and reports the peak RSS of its largest descendant, so each tool is measured on its own.
MEASURE = ("import resource, subprocess, sys\n"
           "code = subprocess.call(sys.argv[1:])\n"
           "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
           "sys.exit(code)\n")


def make_submissions(root: Path, n: int) -> list[str]:
    examples = sorted((REPO / "examples" / "submitted").glob(f"*/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"))
    if not examples:
        sys.exit(f"no example notebooks under {REPO / 'examples' / 'submitted'}; run `python -m backprop_ninja.examples`")
    templates = [json.loads(p.read_text()) for p in examples]
    students = [f"s{i:04d}" for i in range(n)]
    for i, student in enumerate(students):
        nb = templates[i % len(templates)]
        nb["metadata"]["benchmark_student"] = student
        path = root / "submitted" / student / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(nb, indent=1))
    return students


def measured(command: list[str], env: dict, cwd: Path) -> tuple[float, int, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURE, *command], env=env, cwd=cwd, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - started
    peak = next((int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("MAXRSS_KB")), 0)
    return seconds, peak, done


def prepare_course(source_course: Path, work: Path, env: dict) -> Path:
    course = work / "course"
    course.mkdir()
    if not (source_course / "nbgrader_config.py").is_file() or not (source_course / "source" / ASSIGNMENT).is_dir():
        sys.exit(f"{source_course} is not the nbgrader course: it needs nbgrader_config.py and source/{ASSIGNMENT}/; "
                 f"run `backprop-ninja assign` there first")
    shutil.copy(source_course / "nbgrader_config.py", course)
    shutil.copytree(source_course / "source", course / "source")
    done = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", ASSIGNMENT, "--force",
                           f"--CourseDirectory.root={course}"], cwd=course, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"nbgrader generate_assignment failed:\n{done.stderr[-3000:]}")
    return course


def report_line(name: str, n: int, seconds: float, peak_kb: int) -> float:
    rate = n / seconds
    print(f"{name:10s} {n:5d} submissions in {seconds:8.1f} s = {rate:7.2f} submissions/s; "
          f"1,000 would take {1000 / rate:8.0f} s; peak RSS of one process {peak_kb / 1024:6.0f} MiB")
    return rate


def side_by_side(args, batch: list[str], env: dict, work: Path, students: list[str]) -> int:
    """The baseline checkout's batch, then this one's, on the same submissions, --rounds times; exit 1 if the points
    or statuses differ anywhere."""
    baseline = args.baseline.resolve()
    if not (baseline / "backprop_ninja" / "batch").is_dir():
        sys.exit(f"{baseline} is not a checkout of the kit (no backprop_ninja/batch/ there)")
    trees = {"baseline": {**env, "PYTHONPATH": str(baseline)}, "this": {**env, "PYTHONPATH": str(REPO)}}
    same = True
    for round_number in range(1, args.rounds + 1):
        seconds, outs = {}, {}
        for name, tree_env in trees.items():
            outs[name] = work / f"graded-{name}-{round_number}"
            seconds[name], peak, done = measured(batch + ["--out", str(outs[name])], tree_env, work)
            if done.returncode not in (0, 3):
                sys.exit(f"the {name} batch failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            report_line(name, args.n, seconds[name], peak)
        agree = results_verdicts(outs["baseline"], students) == results_verdicts(outs["this"], students)
        same &= agree
        print(f"round {round_number}: this / baseline time {seconds['this'] / seconds['baseline']:.2f}x; "
              f"1,000 would take {1000 * seconds['this'] / args.n:.1f} s here (goal <= {GOAL_SECONDS_PER_1000:.0f} s); "
              f"same points and statuses: {'yes' if agree else 'NO'}")
        for name in outs:
            shutil.rmtree(outs[name], ignore_errors=True)
    return 0 if same else 1


def results_verdicts(out: Path, students: list[str]) -> dict:
    """student -> {unit: (points, status)}, from each results.json's Gradescope tests."""
    verdicts = {}
    for student in students:
        data = json.loads((out / student / "results.json").read_text())
        verdicts[student] = {t["name"]: (t["score"], (t.get("extra_data") or {}).get("status"))
                             for t in data.get("tests", [])}
    return verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--course", type=Path, default=REPO, help="the nbgrader course folder (default: the repo)")
    parser.add_argument("--n", type=int, default=60, help="submissions for the batch (default 60)")
    parser.add_argument("--nbgrader-n", type=int, default=6, help="how many of them nbgrader grades (default 6)")
    parser.add_argument("--jobs", type=int, default=2, help="batch workers (default 2)")
    parser.add_argument("--batch-only", action="store_true", help="skip nbgrader")
    parser.add_argument("--compare-isolation", action="store_true",
                        help="also grade the same submissions with --no-isolation and print the ratio")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")
    parser.add_argument("--baseline", type=Path, metavar="DIR",
                        help="another checkout to grade the same submissions with, side by side (PYTHONPATH=DIR)")
    parser.add_argument("--rounds", type=int, default=1, help="with --baseline: pairs of runs, in turn (default 1)")
    args = parser.parse_args()

    from backprop_ninja.assign import nbgrader_env
    from backprop_ninja.data import names_path

    env = nbgrader_env(str(names_path()))
    work = Path(tempfile.mkdtemp(prefix="bn-bench-"))
    try:
        course = work / "course" if args.batch_only else prepare_course(args.course.resolve(), work, env)
        students = make_submissions(course, args.n)
        print(f"{args.n} submissions from {len(students) and 'the examples'}; machine: {os.cpu_count()} CPUs")

        batch = [sys.executable, "-m", "backprop_ninja", "grade", str(course / "submitted"), "--jobs", str(args.jobs)]
        if args.baseline:
            return side_by_side(args, batch, env, work, students)
        out = work / "graded"
        seconds, peak, done = measured(batch + ["--out", str(out)], env, work)
        if done.returncode not in (0, 3):
            sys.exit(f"the batch failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        ours = report_line(f"batch -j{args.jobs}", args.n, seconds, peak)
        print(f"           {done.stdout.strip().splitlines()[-1]}")
        goal = "met" if 1000 / ours <= GOAL_SECONDS_PER_1000 else "NOT met"
        print(f"goal: 1,000 submissions in <= {GOAL_SECONDS_PER_1000:.0f} s on 2 cores, isolated: {goal}")
        if args.compare_isolation:  # the same submissions, right after, with student code unisolated
            seconds, peak, done = measured(batch + ["--out", str(work / "graded-unisolated"), "--no-isolation"],
                                           env, work)
            if done.returncode not in (0, 3):
                sys.exit(f"the unisolated batch failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            unisolated = report_line("unisolated", args.n, seconds, peak)
            same = results_points(out, students) == results_points(work / "graded-unisolated", students)
            print(f"isolated / unisolated time: {unisolated / ours:.2f}x; same points: {'yes' if same else 'NO'}")
        if args.batch_only:
            return 0

        subset = students[:args.nbgrader_n]
        for student in students[args.nbgrader_n:]:  # nbgrader grades every folder of submitted/
            shutil.move(course / "submitted" / student, work / "not-for-nbgrader" / student)
        seconds, peak, done = measured([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--force",
                                        f"--CourseDirectory.root={course}"], env, course)
        if done.returncode != 0:
            sys.exit(f"nbgrader autograde failed:\n{done.stderr[-3000:]}")
        theirs = report_line("nbgrader", len(subset), seconds, peak)
        ratio = ours / theirs
        print(f"ratio: the batch grades {ratio:.1f}x as many submissions per second as nbgrader "
              f"(goal >= {GOAL_RATIO:.0f}x: {'met' if ratio >= GOAL_RATIO else 'NOT met'})")

        from_nbgrader, from_batch = nbgrader_points(course, subset), results_points(out, subset)
        differ = [(s, u, from_batch[s].get(u), p) for s in subset for u, p in from_nbgrader[s].items()
                  if from_batch[s].get(u) != p]
        print(f"same points for every unit of the {len(subset)} students graded by both: "
              f"{'yes' if not differ else 'NO'}")
        for student, unit, mine, theirs_points in differ[:20]:
            print(f"  {student} {unit}: batch {mine}, nbgrader {theirs_points}")
        return 0 if not differ else 1
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
