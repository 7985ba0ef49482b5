"""`backprop-ninja export canvas|long GRADED_DIR --out FILE`: a graded folder as a file another tool imports.

Exit status: 0 written; 1 nothing written (the message says what to fix); 3 written, but some graded students are
not in the roster, or some rows are not grades yet (the warning lists them: fix the roster or rerun the batch, then
export again).
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from backprop_ninja.batch.records import CSV_NAME, write_text_atomically
from backprop_ninja.export.canvas import DEFAULT_ASSIGNMENT, DEFAULT_MATCH_COLUMN, canvas_rows
from backprop_ninja.export.graded import ExportError, format_points, read_graded
from backprop_ninja.export.long_format import long_rows
from backprop_ninja.export.roster import read_roster
from backprop_ninja.export.safe_text import csv_rows, terminal_text

EXIT_OK, EXIT_ERROR, EXIT_INCOMPLETE = 0, 1, 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    canvas = formats.add_parser("canvas", help="a Canvas gradebook import CSV (Grades, Import)")
    canvas.add_argument("graded", type=Path, metavar="GRADED_DIR", help="the folder `backprop-ninja grade` wrote")
    canvas.add_argument("--roster", type=Path, required=True,
                        help="the class roster CSV: Canvas's gradebook export (Grades, Export) works as it is")
    canvas.add_argument("--out", type=Path, required=True, help="the CSV to write, e.g. out/canvas.csv")
    canvas.add_argument("--match-column", default=DEFAULT_MATCH_COLUMN,
                        help=f"the roster column that holds the kit's student ids (default: {DEFAULT_MATCH_COLUMN})")
    canvas.add_argument("--assignment-name", default=DEFAULT_ASSIGNMENT,
                        help=f"the Canvas assignment's name (default: {DEFAULT_ASSIGNMENT})")
    canvas.add_argument("--assignment-id", help="the Canvas assignment's id (the number in its URL); without it "
                                                "Canvas matches the assignment by name or offers to create it")
    canvas.add_argument("--missing-as-zero", action="store_true",
                        help="give roster students with no submission 0 points (default: an empty cell, which "
                             "leaves their Canvas score as it is)")
    canvas.add_argument("--no-points-possible", action="store_true",
                        help="leave out the Points Possible row (Canvas then keeps the assignment's own maximum)")
    long = formats.add_parser("long", help="a long-format CSV: one row per student per unit")
    long.add_argument("graded", type=Path, metavar="GRADED_DIR", help="the folder `backprop-ninja grade` wrote")
    long.add_argument("--out", type=Path, required=True, help="the CSV to write, e.g. out/long.csv")


def run(args: argparse.Namespace) -> int:
    try:
        _refuse_to_overwrite_inputs(args)
        graded = read_graded(args.graded)
        if args.format == "long":
            _write_csv(args.out, long_rows(graded))
            print(f"wrote {terminal_text(args.out)}: {len(graded.students)} students x {len(graded.units)} units")
            return EXIT_OK
        return _export_canvas(args, graded)
    except ExportError as error:
        print(f"backprop-ninja export: {error}", file=sys.stderr)
        return EXIT_ERROR


def _export_canvas(args: argparse.Namespace, graded) -> int:
    roster = read_roster(args.roster, args.match_column)
    export = canvas_rows(graded, roster, assignment_name=args.assignment_name, assignment_id=args.assignment_id,
                         missing_as_zero=args.missing_as_zero, points_possible=not args.no_points_possible)
    _write_csv(args.out, export.rows)
    print(f"wrote {terminal_text(args.out)}: {export.scored} of {len(roster.students)} roster students scored "
          f"(column {graded.score_column} of {terminal_text(graded.folder / CSV_NAME)})")
    if export.no_submission:
        given = "0 points (--missing-as-zero)" if args.missing_as_zero else \
            "an empty cell, which leaves their Canvas score unchanged (--missing-as-zero gives 0)"
        print(f"{len(export.no_submission)} roster students have no graded submission and get {given}: "
              f"{terminal_text(', '.join(export.no_submission))}")
    if export.no_key_lines:
        print(f"warning: roster lines {', '.join(map(str, export.no_key_lines))} have an empty "
              f"{terminal_text(roster.match_column)}; those students cannot be matched to a submission.",
              file=sys.stderr)
    if export.not_final:
        print(f"warning: {len(export.not_final)} students were left empty because their row is not a grade yet; "
              f"rerun `backprop-ninja grade` on the same --out, then export again:\n"
              + "\n".join(f"  {terminal_text(s.student_id)}: {s.not_final}" for s in export.not_final),
              file=sys.stderr)
    if export.not_in_roster:
        print(f"warning: {len(export.not_in_roster)} graded students are not in the roster "
              f"{terminal_text(args.roster)} (matched on {terminal_text(roster.match_column)}), so they are NOT in "
              f"{terminal_text(args.out)}; add them to the roster, or rename their submissions, then export again:\n"
              + "\n".join(f"  {terminal_text(s.student_id)}: {format_points(s.score)}/{format_points(s.max_points)}"
                          for s in export.not_in_roster), file=sys.stderr)
    return EXIT_INCOMPLETE if export.not_in_roster or export.not_final else EXIT_OK


def _refuse_to_overwrite_inputs(args: argparse.Namespace) -> None:
    """--out must not name an input: an export never replaces the grades or the roster it reads."""
    out = args.out.resolve()
    inputs = [args.graded / CSV_NAME] + ([args.roster] if getattr(args, "roster", None) else [])
    for path in inputs:
        if out == path.resolve():
            raise ExportError(f"--out {terminal_text(args.out)} is an input of this export; write elsewhere "
                              f"(e.g. out/canvas.csv).")
    if out.is_relative_to(args.graded.resolve()) and out.name == "results.json":
        raise ExportError(f"--out {terminal_text(args.out)} would replace a student's results; write elsewhere.")


def _write_csv(path: Path, rows: list[list]) -> None:
    """Every cell through safe_text.csv_rows (names and ids come from students), then written atomically."""
    buffer = io.StringIO()
    csv.writer(buffer).writerows(csv_rows(rows))
    try:
        write_text_atomically(path, buffer.getvalue())
    except OSError as error:
        raise ExportError(f"cannot write {terminal_text(path)} ({error}); choose another --out.") from None
