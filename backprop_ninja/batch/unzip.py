"""Unpacking a class zip, which is untrusted: only its .ipynb entries, as regular files, within caps.

The sizes in a zip's headers are never trusted: bytes are counted as they are written. The whole zip is
refused (BatchError) when it has too many entries, unpacks to too much, or two entries would land on the
same file; one entry that is too big, too compressed, a link or unreadable only becomes that student's row.
"""
from __future__ import annotations

import posixpath
import shutil
import stat
import zipfile
import zlib
from pathlib import Path

from backprop_ninja.batch.ids import is_notebook_name
from backprop_ninja.batch.submission import BatchError
from backprop_ninja.grade.limits import MAX_NOTEBOOK_BYTES

MAX_ZIP_ENTRIES = 10_000               # entries of any kind in the zip's directory
MAX_UNPACKED_BYTES = 2 << 30           # notebook bytes written for one zip, all entries together
MAX_COMPRESSION_RATIO = 200            # unpacked / packed size of one entry ...
RATIO_CHECKED_FROM_BYTES = 1 << 20     # ... once it has unpacked to this much (small files compress well)
CHUNK_BYTES = 1 << 16
RESUBMIT = "submit the notebook file itself"


def unzip_notebooks(archive: Path, work_dir: Path) -> tuple[Path, dict[str, str]]:
    """Unpack the zip's .ipynb entries (and nothing else) under work_dir/unzipped, keeping their folders.

    Returns the folder and, for entries that were not unpacked, {their path in the folder: why}; an empty
    file stands in for each, so that they are found (and get their ids) like the others.
    """
    target = work_dir / "unzipped"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            return target, _Unpacker(archive, target).unpack(zf)
    except (zipfile.BadZipFile, OSError) as error:
        raise BatchError(f"{archive} is not a readable zip file ({error}); check the download, or unzip it "
                         f"yourself and pass the folder.") from error


def cleaned_path(entry_name: str) -> str | None:
    """The entry's path inside the unpack folder: '\\' read as '/', '..' resolved, nothing above the folder."""
    path = posixpath.normpath("/" + entry_name.replace("\\", "/")).lstrip("/")
    return path if path not in ("", ".") else None


def human_size(n_bytes: int) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n_bytes >= size:
            return f"{n_bytes / size:.3g} {unit}"
    return f"{n_bytes} bytes"


class _Unpacker:
    def __init__(self, archive: Path, target: Path):
        self.archive, self.target = archive, target
        self.written = 0                       # bytes written so far, all entries together
        self.origin: dict[str, str] = {}       # cleaned path -> the entry name it came from
        self.refused: dict[str, str] = {}

    def unpack(self, zf: zipfile.ZipFile) -> dict[str, str]:
        entries = zf.infolist()
        if len(entries) > MAX_ZIP_ENTRIES:
            raise BatchError(f"{self.archive} has {len(entries):,} entries, over the cap of {MAX_ZIP_ENTRIES:,} "
                             f"(MAX_ZIP_ENTRIES); split the class into smaller zips.")
        for entry in entries:
            inside = cleaned_path(entry.filename)
            if (entry.is_dir() or inside is None or not is_notebook_name(inside)
                    or "__MACOSX" in inside.split("/")):
                continue
            self._claim(inside, entry.filename)
            self._unpack_entry(zf, entry, inside)
        return self.refused

    def _claim(self, inside: str, entry_name: str) -> None:
        """Two entries that clean to the same path would overwrite each other: refuse the zip, naming both."""
        if inside in self.origin:
            raise BatchError(f"{self.archive} has two entries that unpack to the same file {inside}: "
                             f"{self.origin[inside]!r} and {entry_name!r}; rename or remove one and zip again.")
        self.origin[inside] = entry_name

    def _unpack_entry(self, zf: zipfile.ZipFile, entry: zipfile.ZipInfo, inside: str) -> None:
        dest = self.target / inside
        name = posixpath.basename(inside)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            with open(dest, "wb") as out:  # a regular file, whatever the entry claims to be
                if stat.S_ISLNK(entry.external_attr >> 16):
                    self.refused[inside] = f"{name} is a symbolic link in the zip; {RESUBMIT}"
                    return
                problem = self._copy_capped(zf, entry, name, out)
                if problem:
                    out.truncate(0)  # the empty stand-in: nothing of a refused entry is kept
                    self.refused[inside] = problem
        except OSError as error:
            raise BatchError(f"Cannot unpack {entry.filename!r} of {self.archive} to {dest} ({error.strerror}); "
                             f"free disk space if it is full, else rename the entry in the zip or unzip it "
                             f"yourself and pass the folder.") from error

    def _copy_capped(self, zf: zipfile.ZipFile, entry: zipfile.ZipInfo, name: str, out) -> str | None:
        """Copy one entry, counting bytes; return why it was stopped, or None when it is whole."""
        if entry.file_size > MAX_NOTEBOOK_BYTES:  # the header says so: no need to unpack it to know
            return _too_big(name, f"is {human_size(entry.file_size)}, over")
        size = 0
        try:
            with zf.open(entry) as src:
                while chunk := src.read(CHUNK_BYTES):
                    size += len(chunk)
                    if size > MAX_NOTEBOOK_BYTES:  # the header lied about the size
                        return _too_big(name, "is over")
                    if size > RATIO_CHECKED_FROM_BYTES and size > MAX_COMPRESSION_RATIO * max(entry.compress_size, 1):
                        return (f"{name} unpacks to over {MAX_COMPRESSION_RATIO} times its packed size, which no "
                                f"real notebook does; {RESUBMIT}")
                    if self.written + len(chunk) > MAX_UNPACKED_BYTES:
                        raise BatchError(
                            f"{self.archive} unpacks to more than {human_size(MAX_UNPACKED_BYTES)} of notebooks, "
                            f"the cap on one zip (MAX_UNPACKED_BYTES); split the class into smaller zips.")
                    out.write(chunk)
                    self.written += len(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as error:
            # a damaged, encrypted or oddly compressed entry is that student's problem, not the batch's
            return f"{name} could not be unpacked from the zip ({error}); {RESUBMIT}"
        return None


def _too_big(name: str, how_big: str) -> str:
    return (f"{name} {how_big} the {human_size(MAX_NOTEBOOK_BYTES)} limit of a notebook; clear its outputs "
            f"(Edit > Clear All Outputs), save, and submit it again")
