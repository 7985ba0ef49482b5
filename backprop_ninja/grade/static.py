"""Static scan of one answer cell: does it ask autograd (or a library function) for the gradient?

Parsed with `ast`, so comments, strings and names that merely contain "grad" are not flagged, and a
helper *defined* as `def manual_backward(...)` is fine. The run-time guard in the child process
catches what a scan cannot (e.g. names built at run time); this scan gives the clearer message.
It runs in the trusted grader process, so it never raises: a cell too deeply nested for Python's
parser is reported like a syntax error.

The scan itself is autograd_scan.py (needs only `ast`, inlined into the notebook so check() gives the same
finding); this module feeds it the units table's data.
"""
from __future__ import annotations

from backprop_ninja import units
from backprop_ninja.grade import syntax
from backprop_ninja.grade.autograd_scan import Finding, Rules, import_aliases
from backprop_ninja.grade.autograd_scan import scan as scan_plain
from backprop_ninja.grade.cell_text import strip_magics  # noqa: F401 (the engine reads it from here too)

__all__ = ["Finding", "Rules", "rules_for", "scan", "strip_magics"]
_import_aliases = import_aliases  # definitions.py reads it under this name


def rules_for(unit: units.Unit) -> Rules:
    """What `unit`'s answer cell may not use, from the units table."""
    return Rules(answer=unit.answer, forbidden=tuple(unit.forbidden), attributes=tuple(units.AUTOGRAD_ATTRIBUTES),
                 modules=tuple(units.AUTOGRAD_MODULES))


def scan(source: str, unit: units.Unit, *, aliases: dict[str, str] | None = None) -> Finding | None:
    """The first forbidden construct in `source` (or why it does not parse), None if the cell is clean.
    `aliases`: import aliases bound before this source runs (by a cell the student added), as _import_aliases."""
    plain = strip_magics(source)
    try:
        walked = syntax.nodes(plain)
    except (SyntaxError, ValueError, RecursionError, MemoryError, UnicodeEncodeError):
        with syntax.PARSING:  # scan_plain parses it again and says why it does not parse
            return scan_plain(plain, rules_for(unit), aliases, None)
    return scan_plain(plain, rules_for(unit), aliases, walked)
