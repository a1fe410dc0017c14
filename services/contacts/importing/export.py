"""Contacts written back out as CSV that is safe to open in a spreadsheet:
a contact's name is typed by someone else and must never run as a formula."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import TextIO

# Excel, LibreOffice and Google Sheets start a formula on these; a leading
# tab or CR can hide one from a reader's eye. The price is that '-3' is
# exported as text, which is right for a contact book.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def write_contacts_csv(rows: Iterable[dict[str, str]], out: TextIO, columns: Sequence[str]) -> None:
    """``out`` should be opened with newline='' as the csv module requires."""
    writer = csv.writer(out)
    writer.writerow([csv_safe(c) for c in columns])
    for row in rows:
        writer.writerow([csv_safe(str(row.get(c) or "")) for c in columns])
