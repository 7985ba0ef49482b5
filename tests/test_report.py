"""The cohort report: mistake classes from verdict messages, the matrix CSV, and an HTML page that a
real browser (headless Chromium) renders with the expected table."""
from __future__ import annotations

import csv
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from backprop_ninja import batch, report
from backprop_ninja.cli import main

UNITS = [("ex1_probs", 1.0), ("ex1_bnvar", 1.0), ("ex2_logits", 2.0)]
BESSEL = "off by a factor n/(n-1): Bessel's correction, n vs n-1"
SIGN = "the sign is flipped"


def write_result(out: Path, student: str, outcomes: dict, error: str | None = None) -> None:
    verdicts = [{"unit": unit, "status": outcomes[unit][0], "message": outcomes[unit][1],
                 "points": points if outcomes[unit][0] == "ok" else 0.0, "max_points": points}
                for unit, points in UNITS]
    result = {"verdicts": verdicts, "error": error, "execution_time": 0.1}
    sub = batch.Submission(student, out / f"{student}.ipynb", f"{student}.ipynb")
    record = batch.make_record(sub, "key", "v", "sha", "run", result, UNITS)
    batch.write_json_atomically(out / student / "results.json",
                                {"score": 0.0, "tests": [], "extra_data": {"backprop_ninja": record}})


@pytest.fixture
def results_dir(tmp_path):
    """Five students: dbnvar is missed with the Bessel factor by 2, flipped by 1; one is not gradable."""
    out = tmp_path / "graded"
    ok = ("ok", "right on all 4 replays")
    write_result(out, "ann", {"ex1_probs": ok, "ex1_bnvar": ok, "ex2_logits": ok})
    write_result(out, "ben", {"ex1_probs": ok, "ex1_bnvar": ("wrong", BESSEL), "ex2_logits": ok})
    write_result(out, "cat", {"ex1_probs": ("missing", "no answer"), "ex1_bnvar": ("wrong", BESSEL),
                              "ex2_logits": ("uses_autograd", "calls .backward()")})
    write_result(out, "dan", {"ex1_probs": ok, "ex1_bnvar": ("wrong", SIGN), "ex2_logits": ok})
    crashed = ("crashed", "not graded")
    write_result(out, "eve", {u: crashed for u, _ in UNITS}, error="not a notebook")
    (out / "stray").mkdir()  # a folder without results is ignored
    return out


@pytest.mark.parametrize("status, message, expected", [
    ("ok", "right on all 4 replays", "ok"),
    ("wrong", BESSEL, "bessel"),
    ("wrong", "the sign is flipped and it is off by a factor (n-1)/n (n vs n-1)", "bessel"),
    ("wrong", "the sign is flipped and it is off by a factor 2", "factor"),
    ("wrong", SIGN, "sign"),
    ("wrong", "transposed: shape (27, 64) instead of (64, 27); rows and columns are swapped", "transpose"),
    ("wrong", "shape (32, 64) instead of (64,): missing a sum over axis 0 (broadcasting ...)", "broadcast"),
    ("wrong", "values right, shape (64,) instead of (1, 64): keep the summed dimension (keepdim=True)", "shape"),
    ("wrong", "only the branch through `probs` is there; `counts` is also used by `counts_sum`", "branch"),
    ("wrong", "wrong only where each row's logit is largest (the argmax positions)", "argmax"),
    ("wrong", "contains NaN at 3 of 64 positions: look for a division by zero", "nan"),
    ("wrong", "right when the batch has 32 examples ...: it looks like a literal 32 where n belongs", "hard-coded"),
    ("wrong", "values differ at 7 of 2048 positions", "values"),
    ("wrong", "wrong in 12 of 64 columns, right in the other 52", "values"),
    ("wrong", "the path through `bnvar` is off by a factor (n-1)/n: Bessel's correction, n vs n-1; the other paths "
              "are right", "bessel"),
    ("wrong", "the path through `bnmeani` is missing: every path from `hprebn` to the loss adds its share", "branch"),
    ("wrong", "nearly right: right on the other replays, but wrong on the stress replay: values differ", "near-miss"),
    ("wrong", "wrong only in the rows of characters that appear more than once in the batch: each use adds its "
              "gradient (+= or index_add_)", "accumulate"),
    ("wrong", "it uses the forward value `logprobs` where its gradient `dlogprobs` belongs", "mix-up"),
    ("wrong", "it equals the gradient of `bnraw` (dbnraw), not of `bndiff`: take one more step back", "mix-up"),
    ("timeout", "ran past 10 s", "timeout"),
    ("uses_autograd", "calls .backward()", "autograd"),
    ("not_allowed", "line 1 uses `torch.ops`: an answer may use tensor arithmetic, ...", "not-allowed"),
])
def test_mistake_classes_follow_the_grader_messages(status, message, expected):
    assert report.mistake_class(status, message) == expected


def test_matrix_csv_and_summaries(results_dir, tmp_path):
    out = tmp_path / "report"
    assert main(["report", str(results_dir), "--out", str(out)]) == 0

    with open(out / "matrix.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["student_id", "ex1_probs", "ex1_bnvar", "ex2_logits"]
    assert rows[2] == ["ben", "ok", "bessel", "ok"]
    assert rows[3] == ["cat", "missing", "bessel", "autograd"]
    assert rows[5] == ["eve", "not graded", "not graded", "not graded"]

    bnvar = report.unit_summaries(report.load_cohort(results_dir))[1]
    assert bnvar["passed"] == 1 and bnvar["pass_rate"] == pytest.approx(20.0)
    assert bnvar["mistakes"][0] == (2, pytest.approx(40.0), "bessel")
    html = (out / "report.html").read_text()
    assert "40 % missed the Bessel factor (n vs n-1) in dbnvar" in html
    assert 'src="data:image/png;base64,' in html and "<link" not in html and "<script" not in html
    assert (out / "heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_on_a_folder_without_results_says_what_to_run(tmp_path, capsys):
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 1
    assert "backprop-ninja grade" in capsys.readouterr().err


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


def test_html_renders_in_headless_chromium(results_dir, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed: apt-get install -y chromium"
    out = tmp_path / "report"
    report.write_report(results_dir, out)
    url = (out / "report.html").resolve().as_uri()
    base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]

    dom = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=60).stdout
    shot = tmp_path / "shot.png"
    subprocess.run(base + ["--window-size=900,1000", f"--screenshot={shot}", url],
                   capture_output=True, timeout=60)

    assert '<table id="units">' in dom
    assert "40 % missed the Bessel factor (n vs n-1) in dbnvar" in dom
    assert "5 students, 4 graded, 1 could not be graded" in dom
    pixels = png_grey_pixels(shot.read_bytes())
    mean = sum(pixels) / len(pixels)
    variance = sum((p - mean) ** 2 for p in pixels) / len(pixels)
    assert variance > 100, "the screenshot is blank"
    green = png_has_colour(shot.read_bytes(), (0x2e, 0x9d, 0x4c))  # the pass bars and heatmap's "ok"
    assert green, "the pass-rate bars or the heatmap did not render"


# A tiny PNG reader (8-bit RGB/RGBA, as Chromium writes), so the test needs no image library.

def _png_rows(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks, header = 8, [], None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour_type = header[:4]
    assert depth == 8 and colour_type in (2, 6), f"unexpected PNG format {depth=} {colour_type=}"
    channels = 3 if colour_type == 2 else 4
    raw, stride, prev = zlib.decompress(b"".join(chunks)), width * channels, bytearray(width * channels)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - channels] if i >= channels else 0
            up, up_left = prev[i], prev[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else up_left)) & 255
        prev = line
        yield [tuple(line[x:x + 3]) for x in range(0, stride, channels)]


def png_grey_pixels(data: bytes) -> list[int]:
    return [sum(px) // 3 for row in _png_rows(data) for px in row[::4]]


def png_has_colour(data: bytes, rgb: tuple[int, int, int], tolerance: int = 12) -> bool:
    return any(all(abs(a - b) <= tolerance for a, b in zip(px, rgb)) for row in _png_rows(data) for px in row)
