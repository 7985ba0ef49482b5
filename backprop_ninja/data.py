"""names.txt, makemore's 32,033 names: where the kit finds it, and `backprop-ninja setup-data`, which puts it there.

The file is always checked against a known sha256 before it is written, and it is written atomically
(a temporary file beside the destination, then os.replace), so data/names.txt is either the verified
file or absent, never half-written or unverified.
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

NAMES_SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"
NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
ENV_VAR = "BACKPROP_NINJA_NAMES"

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DEST = REPO_ROOT / "data" / "names.txt"
DOWNLOAD_TIMEOUT_SECONDS = 30

_HOW_TO_FIX = (
    f"Download names.txt from {NAMES_URL} and run `backprop-ninja setup-data --from PATH`, "
    f"or set {ENV_VAR}=PATH and run `make demo`."
)


class DataSetupError(Exception):
    """names.txt could not be put in place; the message is one paragraph telling the user what to do."""


def names_path() -> Path:
    """The names.txt the kit's own code reads: $BACKPROP_NINJA_NAMES if that file exists, else data/names.txt."""
    from_env = os.environ.get(ENV_VAR)
    if from_env and Path(from_env).is_file():
        return Path(from_env)
    if DEFAULT_DEST.is_file():
        return DEFAULT_DEST
    env_note = f" ({ENV_VAR} is set to {from_env}, but no file is there.)" if from_env else ""
    raise FileNotFoundError(
        f"names.txt is not set up: {DEFAULT_DEST} does not exist.{env_note} "
        f"Run `backprop-ninja setup-data` (or `make demo`) to fetch and verify it. {_HOW_TO_FIX}"
    )


def load_words() -> list[str]:
    """The names, one per line of names.txt, in file order (a fresh list each call; the file is read once)."""
    return list(_read_words(names_path()))


@functools.lru_cache(maxsize=None)
def _read_words(path: Path) -> tuple[str, ...]:
    return tuple(path.read_text(encoding="utf-8").splitlines())


def setup(source: str | os.PathLike | None = None, dest: str | os.PathLike = DEFAULT_DEST) -> Path:
    """Put a verified names.txt at `dest`, copied from `source` or $BACKPROP_NINJA_NAMES, else downloaded.

    Does nothing if `dest` already holds the verified file. Raises DataSetupError on a missing source,
    a failed download or a wrong checksum; `dest` is then left without an unverified file.
    """
    dest = Path(dest)
    if dest.is_file() and _sha256(dest.read_bytes()) == NAMES_SHA256:
        return dest
    try:
        if source is not None:
            content = _read_source(Path(source), f"--from {source}")
        elif os.environ.get(ENV_VAR):
            content = _read_source(Path(os.environ[ENV_VAR]), f"${ENV_VAR}")
        else:
            content = _download()
    except DataSetupError:
        _discard_unverified(dest)
        raise
    _write_atomically(dest, content)
    return dest


def _read_source(path: Path, given_by: str) -> bytes:
    if not path.is_file():
        raise DataSetupError(f"names.txt not found at {path} (given by {given_by}). {_HOW_TO_FIX}")
    content = path.read_bytes()
    _check_sha256(content, str(path))
    return content


def _download() -> bytes:
    try:
        with urllib.request.urlopen(NAMES_URL, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
            content = response.read()
    except (urllib.error.URLError, OSError) as error:  # OSError covers timeouts and resets mid-read
        reason = getattr(error, "reason", error)
        raise DataSetupError(
            f"Could not download names.txt from {NAMES_URL} ({reason}). "
            f"If this machine has no internet access, copy names.txt from a machine that has, then run "
            f"`backprop-ninja setup-data --from PATH`, or set {ENV_VAR}=PATH and run `make demo`."
        ) from error
    _check_sha256(content, NAMES_URL)
    return content


def _check_sha256(content: bytes, origin: str) -> None:
    actual = _sha256(content)
    if actual != NAMES_SHA256:
        raise DataSetupError(
            f"{origin} has sha256 {actual}, but makemore's names.txt has sha256 {NAMES_SHA256}: "
            f"it is a different or damaged file, so it was not used. {_HOW_TO_FIX}"
        )


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _discard_unverified(dest: Path) -> None:
    """A stale or damaged dest must not be picked up by names_path() after a failed set-up."""
    if dest.is_file() and _sha256(dest.read_bytes()) != NAMES_SHA256:
        dest.unlink()


def _write_atomically(dest: Path, content: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Same directory as dest, so os.replace is a rename on one file system; `.partial` is git-ignored.
    fd, temp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as temp:
            temp.write(content)
            temp.flush()
            os.fsync(temp.fileno())
        os.chmod(temp_name, 0o644)  # mkstemp makes it private; the data is for everyone on the machine
        os.replace(temp_name, dest)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


# ---- the `backprop-ninja setup-data` verb ----

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from", dest="source", metavar="PATH",
        help=f"copy names.txt from this file (default: ${ENV_VAR} if set, else download {NAMES_URL})",
    )
    parser.add_argument(
        "--dest", type=Path, default=DEFAULT_DEST, metavar="PATH",
        help=f"where to put the verified file (default: {DEFAULT_DEST})",
    )


def run(args: argparse.Namespace) -> int:
    try:
        path = setup(args.source, args.dest)
    except DataSetupError as error:
        print(f"setup-data: {error}", file=sys.stderr)
        return 1
    except OSError as error:  # e.g. a source that cannot be read or a dest folder that cannot be written
        print(f"setup-data: could not set up {args.dest}: {error}. Check the permissions of both files, "
              f"or choose another place with --dest PATH.", file=sys.stderr)
        return 1
    print(f"names.txt ready at {path} (sha256 {NAMES_SHA256[:12]}... verified)")
    return 0
