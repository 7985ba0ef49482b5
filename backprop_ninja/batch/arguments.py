"""The batch's command-line arguments, and whether an input is a class: all that grading one notebook needs of the
batch, so it stays light (no traitlets, no dateutil, none of the batch's modules) and a cold grading starts its
sandbox sooner."""
from __future__ import annotations

from pathlib import Path

from backprop_ninja.lateness.options import add_lateness_arguments


def add_batch_arguments(parser) -> None:
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="worker processes for a folder or zip (default: the number of CPUs)")
    parser.add_argument("--id-pattern", default=None, metavar="REGEX",
                        help="take the student id from each notebook's file name with this regular expression "
                             "and its (?P<student_id>...) group (default: the file name without .ipynb)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="regrade submissions whose earlier row says they could not be graded")
    parser.add_argument("--shard", type=shard, default=None, metavar="K/N",
                        help="grade only shard K of N (a fixed slice of the class, by a hash of the student id) into "
                             "--out, beside the other shards; then `backprop-ninja merge OUT` writes grades.csv")
    add_lateness_arguments(parser)  # --course-config, --submission-times


def shard(text: str):
    """shards.parse_shard, imported only when --shard is given."""
    from backprop_ninja.batch.shards import parse_shard

    return parse_shard(text)


def is_batch_input(path) -> bool:
    path = Path(path)
    return path.is_dir() or path.suffix.lower() == ".zip"
