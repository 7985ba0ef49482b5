"""Reading a CSV an instructor gives the kit (a roster, extensions, submission times), as spreadsheets write them."""
from __future__ import annotations

import csv
from pathlib import Path


class CsvUnreadable(ValueError):
    """The file cannot be read as a UTF-8 CSV; the text says why, `missing` whether it does not exist."""

    def __init__(self, reason: str, missing: bool = False):
        super().__init__(reason)
        self.missing = missing


def read_rows(path: str | Path) -> list[list[str]]:
    """Every row of the CSV at `path`, with a spreadsheet's byte-order mark dropped (utf-8-sig)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            return list(csv.reader(handle))
    except FileNotFoundError:
        raise CsvUnreadable(f"{path} not found", missing=True) from None
    except OSError as error:
        raise CsvUnreadable(f"cannot read {path} ({error.strerror})") from None
    except (UnicodeDecodeError, csv.Error):
        raise CsvUnreadable(f"{path} is not a UTF-8 CSV; save it as CSV (UTF-8)") from None
