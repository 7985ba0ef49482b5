"""Student ids: taken from file or folder names (or --id-pattern), made safe as folder names, and unique."""
from __future__ import annotations

import re
import sys

from backprop_ninja.batch.submission import BatchError, Submission
from backprop_ninja.export.safe_text import terminal_text

_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")
NOTEBOOK_SUFFIX = ".ipynb"


def is_notebook_name(name: str) -> bool:
    """Alice.IPYNB counts too: LMS downloads and zips do not keep the suffix's case."""
    return name.lower().endswith(NOTEBOOK_SUFFIX)


def safe_student_id(raw: str) -> str:
    """A student id that is safe as a directory name: other characters become '_', no leading dot."""
    cleaned = _UNSAFE.sub("_", raw.strip()).lstrip(".")
    return cleaned or "_"


def compile_id_pattern(id_pattern: str | None) -> re.Pattern | None:
    if not id_pattern:
        return None
    try:
        pattern = re.compile(id_pattern)
    except re.error as error:
        raise BatchError(f"--id-pattern {id_pattern!r} is not a valid regular expression ({error}).") from error
    if "student_id" not in pattern.groupindex:
        raise BatchError(f"--id-pattern {id_pattern!r} has no (?P<student_id>...) group; add one.")
    return pattern


def student_id_from_name(file_name: str, pattern: re.Pattern | None) -> str | None:
    """The id of a notebook found by name in a folder or zip; None (with a warning) if --id-pattern does not match."""
    if pattern is None:
        return safe_student_id(file_name[:-len(NOTEBOOK_SUFFIX)] if is_notebook_name(file_name) else file_name)
    match = pattern.match(file_name)
    if match is None:
        print(f"batch: skipping {terminal_text(file_name)}: it does not match --id-pattern", file=sys.stderr)
        return None
    return safe_student_id(match.group("student_id"))


def refuse_duplicate_ids(found: list[Submission]) -> None:
    seen: dict[str, Submission] = {}
    for sub in found:
        if sub.student_id in seen:
            raise BatchError(
                f"Two submissions have the student id {sub.student_id!r}: {seen[sub.student_id].source} and "
                f"{sub.source}. Rename one, or pass --id-pattern to take the id from another part of the name.")
        seen[sub.student_id] = sub
