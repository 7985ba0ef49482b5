"""The data set-up step: names_path(), load_words() and `backprop-ninja setup-data`.

Every test writes under tmp_path; the real data/names.txt is only ever read (through the names_file fixture).
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest

from backprop_ninja import data
from backprop_ninja.cli import main


@pytest.fixture
def no_env(monkeypatch):
    """Tests run with or without $BACKPROP_NINJA_NAMES (CI sets it); each test states what it needs."""
    monkeypatch.delenv(data.ENV_VAR, raising=False)


@pytest.fixture
def other_file(tmp_path) -> Path:
    path = tmp_path / "elsewhere" / "names.txt"
    path.parent.mkdir()
    path.write_text("emma\nolivia\nava\n")
    return path


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(data.urllib.request, "urlopen", refuse)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---- setup(): the good paths ----

def test_copies_from_argument_and_verifies(no_env, names_file, tmp_path):
    dest = tmp_path / "data" / "names.txt"
    assert data.setup(names_file, dest) == dest
    assert dest.read_bytes() == names_file.read_bytes()
    assert files_in(dest.parent) == ["names.txt"]  # no temporary file left beside it
    assert dest.stat().st_mode & 0o444 == 0o444  # readable by all, not the private mode of a temp file


def test_copies_from_env_var_when_no_argument(monkeypatch, names_file, tmp_path):
    monkeypatch.setenv(data.ENV_VAR, str(names_file))
    dest = tmp_path / "names.txt"
    data.setup(None, dest)
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == data.NAMES_SHA256


def test_argument_wins_over_env_var(monkeypatch, names_file, tmp_path):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "not-there.txt"))
    dest = tmp_path / "names.txt"
    data.setup(names_file, dest)
    assert dest.read_bytes() == names_file.read_bytes()


def test_downloads_when_no_source_given(no_env, monkeypatch, names_file, tmp_path):
    asked = []

    class Response:
        def __init__(self, url, timeout):
            asked.append((url, timeout))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return names_file.read_bytes()

    monkeypatch.setattr(data.urllib.request, "urlopen", Response)
    dest = tmp_path / "names.txt"
    data.setup(None, dest)
    assert dest.read_bytes() == names_file.read_bytes()
    assert asked == [(data.NAMES_URL, data.DOWNLOAD_TIMEOUT_SECONDS)]


def test_second_run_leaves_the_verified_file_alone(no_env, names_file, tmp_path):
    dest = tmp_path / "names.txt"
    data.setup(names_file, dest)
    before = dest.stat()
    # The source is gone now: a second run must not need it, because dest is already verified.
    assert data.setup(tmp_path / "gone.txt", dest) == dest
    after = dest.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_replaces_a_damaged_dest(no_env, names_file, tmp_path):
    dest = tmp_path / "names.txt"
    dest.write_text("half a file")
    data.setup(names_file, dest)
    assert dest.read_bytes() == names_file.read_bytes()


# ---- setup(): the failures, each a clear message and no file left behind ----

def test_wrong_checksum_is_refused_and_nothing_written(no_env, other_file, tmp_path):
    dest = tmp_path / "data" / "names.txt"
    with pytest.raises(data.DataSetupError) as raised:
        data.setup(other_file, dest)
    message = str(raised.value)
    assert str(other_file) in message
    assert data.NAMES_SHA256 in message
    assert hashlib.sha256(other_file.read_bytes()).hexdigest() in message
    assert "setup-data --from PATH" in message
    assert files_in(dest.parent) == []


def test_missing_source_names_the_path_and_what_to_do(no_env, tmp_path):
    missing = tmp_path / "nowhere" / "names.txt"
    dest = tmp_path / "names.txt"
    with pytest.raises(data.DataSetupError) as raised:
        data.setup(missing, dest)
    assert str(missing) in str(raised.value)
    assert data.NAMES_URL in str(raised.value)
    assert not dest.exists()


def test_env_var_pointing_nowhere_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "nowhere.txt"))
    with pytest.raises(data.DataSetupError, match=data.ENV_VAR):
        data.setup(None, tmp_path / "names.txt")
    assert files_in(tmp_path) == []


def test_no_network_says_how_to_work_offline(no_env, no_network, tmp_path):
    dest = tmp_path / "names.txt"
    with pytest.raises(data.DataSetupError) as raised:
        data.setup(None, dest)
    message = str(raised.value)
    assert data.NAMES_URL in message and "no route to host" in message
    assert "--from PATH" in message
    assert files_in(tmp_path) == []


def test_failed_setup_removes_a_damaged_dest(no_env, no_network, tmp_path):
    dest = tmp_path / "names.txt"
    dest.write_text("not the names")
    with pytest.raises(data.DataSetupError):
        data.setup(None, dest)
    assert not dest.exists()


def test_interrupted_write_leaves_no_file(no_env, monkeypatch, names_file, tmp_path):
    def fail_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(data.os, "replace", fail_replace)
    dest = tmp_path / "names.txt"
    with pytest.raises(OSError, match="disk full"):
        data.setup(names_file, dest)
    assert files_in(tmp_path) == []


# ---- the CLI verb ----

def test_cli_copies_and_reports(no_env, names_file, tmp_path, capsys):
    dest = tmp_path / "names.txt"
    assert main(["setup-data", "--from", str(names_file), "--dest", str(dest)]) == 0
    assert dest.read_bytes() == names_file.read_bytes()
    assert str(dest) in capsys.readouterr().out


def test_cli_failure_prints_the_message_without_traceback(no_env, other_file, tmp_path):
    dest = tmp_path / "names.txt"
    done = subprocess.run(
        [sys.executable, "-m", "backprop_ninja", "setup-data", "--from", str(other_file), "--dest", str(dest)],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert data.NAMES_SHA256 in done.stderr and str(other_file) in done.stderr
    assert not dest.exists()


# ---- where the kit finds the data ----

def test_names_path_prefers_an_existing_env_var_file(monkeypatch, other_file):
    monkeypatch.setenv(data.ENV_VAR, str(other_file))
    assert data.names_path() == other_file


def test_names_path_falls_back_to_repo_data(monkeypatch, tmp_path, other_file):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "nowhere.txt"))
    monkeypatch.setattr(data, "DEFAULT_DEST", other_file)
    assert data.names_path() == other_file


def test_names_path_without_data_says_to_run_setup(monkeypatch, tmp_path):
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path / "nowhere.txt"))
    monkeypatch.setattr(data, "DEFAULT_DEST", tmp_path / "data" / "names.txt")
    with pytest.raises(FileNotFoundError) as raised:
        data.names_path()
    message = str(raised.value)
    assert "backprop-ninja setup-data" in message and "make demo" in message
    assert data.ENV_VAR in message


def test_load_words_reads_one_name_per_line(monkeypatch, other_file):
    monkeypatch.setenv(data.ENV_VAR, str(other_file))
    words = data.load_words()
    assert words == other_file.read_text().splitlines()
    words.append("mutated")  # callers get their own list; the cached copy must not change
    assert data.load_words() == other_file.read_text().splitlines()


def test_real_data_is_the_verified_makemore_names(names_file):
    assert hashlib.sha256(names_file.read_bytes()).hexdigest() == data.NAMES_SHA256
    words = data.load_words()
    assert len(words) == 32033
    assert all(word and set(word) <= set("abcdefghijklmnopqrstuvwxyz") for word in words)


def test_checksum_file_agrees_with_the_code():
    recorded = (data.REPO_ROOT / "data" / "names.sha256").read_text().split()
    assert recorded == [data.NAMES_SHA256, "names.txt"]
