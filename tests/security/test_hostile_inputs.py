"""Hostile class inputs to the batch grader: the trusted process survives, never hangs, writes nothing it should
not, and every refused input becomes a row that says why (or, where the whole input is ambiguous, the batch stops
and names the culprits). Each run has an honest classmate, alice, who must still get full marks.
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

import security_harness as h
from fixtures.correct_cells import CORRECT_CELLS
from notebooks import write_submission

pytestmark = pytest.mark.isolation  # proves the sandbox: needs bubblewrap

NEVER_HANGS_SECONDS = 90     # a class of three takes seconds; a read that blocks would take for ever
BOMB_PACKED_TO_UNPACKED = 1 << 30  # ~1 MB of deflated zeros in the zip: one notebook unpacks to a gigabyte
UNPACKED_ON_DISK_CAP = 64 << 20    # what the output folder may hold afterwards (a notebook's cap is far below)
EXIT_BATCH_FAILED = 1


def grade_class(source: Path, base: Path, names_file: Path) -> tuple[h.Run, Path, list[str]]:
    out = base / "out"
    done, leftovers = h.watched(h.grade_cli(source, "--out", out, "--jobs", "2"),
                                h.grader_env(base / "tmp", names_file), cwd=base, timeout=NEVER_HANGS_SECONDS)
    return done, out, leftovers


def assert_alice_has_full_marks(out: Path) -> None:
    row = h.read_rows(out / "grades.csv")["alice"]
    assert float(row["total"]) == h.MAX_SCORE and row["error"] == "", row


def assert_refused_with_a_clear_row(out: Path, student: str) -> None:
    row = h.read_rows(out / "grades.csv")[student]
    assert float(row["total"]) == 0, row
    problem = h.unclear(row["error"])
    assert problem is None, f"{student}: {problem}"


# ---------------------------------------------------------------- a device and a FIFO named like notebooks

@pytest.fixture(scope="module")
def devices(workdir, names_file):
    base = workdir / "devices"
    folder = base / "class"
    folder.mkdir(parents=True)
    write_submission(folder / "alice.ipynb", CORRECT_CELLS)
    (folder / "zero.ipynb").symlink_to("/dev/zero")
    os.mkfifo(folder / "pipe.ipynb")
    return grade_class(folder, base, names_file)


def test_a_device_and_a_fifo_never_hang_the_batch(devices):
    run, out, _ = devices
    assert run.returncode is not None, f"the batch was still running after {NEVER_HANGS_SECONDS} s"
    assert run.returncode in (0, 3), run.log
    assert_alice_has_full_marks(out)


@pytest.mark.parametrize("student", ["zero", "pipe"])
def test_a_device_or_fifo_becomes_a_row_that_says_why(devices, student):
    _, out, _ = devices
    assert (out / "grades.csv").is_file(), devices[0].log
    assert_refused_with_a_clear_row(out, student)


def test_devices_leave_nothing_behind(devices):
    run, _, leftovers = devices
    h.assert_nothing_left(run, leftovers)


# ---------------------------------------------------------------- a zip bomb

@pytest.fixture(scope="module")
def bomb(workdir, names_file):
    base = workdir / "bomb"
    base.mkdir()
    alice = write_submission(base / "alice.ipynb", CORRECT_CELLS).read_bytes()
    archive = base / "class.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("alice.ipynb", alice)
        entry = zipfile.ZipInfo("bomb.ipynb")
        entry.compress_type = zipfile.ZIP_DEFLATED
        with zf.open(entry, "w", force_zip64=True) as f:  # a notebook with a gigabyte of zeros in its metadata
            f.write(b'{"cells": [], "metadata": {"pad": "')
            zeros = b"0" * (1 << 20)
            for _ in range(BOMB_PACKED_TO_UNPACKED >> 20):
                f.write(zeros)
            f.write(b'"}, "nbformat": 4, "nbformat_minor": 5}')
    assert archive.stat().st_size < 2 << 20
    return grade_class(archive, base, names_file)


def test_a_zip_bomb_becomes_a_row_and_is_not_unpacked(bomb):
    run, out, leftovers = bomb
    assert run.returncode in (0, 3), run.log
    assert_alice_has_full_marks(out)
    assert_refused_with_a_clear_row(out, "bomb")
    assert h.folder_bytes(out) < UNPACKED_ON_DISK_CAP, f"the output folder holds {h.folder_bytes(out) >> 20} MB"
    h.assert_nothing_left(run, leftovers)


# ---------------------------------------------------------------- two entries that land on one file

def test_a_zip_entry_that_climbs_out_stops_the_batch_and_overwrites_nothing(workdir, names_file):
    base = workdir / "traversal"
    base.mkdir()
    honest = write_submission(base / "honest.ipynb", CORRECT_CELLS).read_bytes()
    other = write_submission(base / "other.ipynb", {}).read_bytes()
    archive = base / "class.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("alice.ipynb", honest)
        zf.writestr("../alice.ipynb", other)
    before = sorted(p.name for p in base.iterdir())

    run, out, leftovers = grade_class(archive, base, names_file)

    assert run.returncode == EXIT_BATCH_FAILED, run.log
    named = run.stderr.replace("../alice.ipynb", "")
    assert "../alice.ipynb" in run.stderr and "alice.ipynb" in named, f"both entries must be named:\n{run.log}"
    assert not (out / "alice" / "results.json").exists(), "the batch graded one of two notebooks with one name"
    assert sorted(p.name for p in base.iterdir() if p.name not in ("out", "tmp")) == before
    unpacked = list(out.rglob("alice.ipynb"))
    assert all(p.read_bytes() == honest for p in unpacked), "the second entry overwrote the first"
    h.assert_nothing_left(run, leftovers)
