"""One entry point for an uploaded file: the content decides between vCard
and CSV (people rename files), the extension only breaks a tie."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

from services.contacts.importing.csv_formats import parse_csv
from services.contacts.importing.decode import CHUNK_SIZE, Readable, peek_text, read_head
from services.contacts.importing.model import ColumnMapping, ImportFormatError, RowOutcome
from services.contacts.importing.vcard import parse_vcards

_SPREADSHEETS = (".xlsx", ".xls", ".ods", ".numbers")
# Zip (xlsx, ods, numbers) and the old OLE2 container (xls).
_BINARY_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")


def parse_file(
    stream: Readable,
    filename: str | None = None,
    *,
    mapping: ColumnMapping | None = None,
    delimiter: str | None = None,
    default_region: str = "FR",
) -> Iterator[RowOutcome]:
    # A generator, like the parsers: nothing is read, and no error raised,
    # until the caller starts iterating.
    head = read_head(stream, CHUNK_SIZE)
    whole = _Replay(head, stream)
    name = (filename or "").lower()
    if head.startswith(_BINARY_MAGIC) or name.endswith(_SPREADSHEETS):
        raise ImportFormatError(
            "unknown format: this is a spreadsheet file; export it as CSV (or the contacts as vCard)"
        )
    text = peek_text(head).lstrip()
    if re.match(r"BEGIN\s*:\s*VCARD", text, re.IGNORECASE) or (
        not text and name.endswith((".vcf", ".vcard"))
    ):
        yield from parse_vcards(whole, default_region=default_region)
    else:
        yield from parse_csv(whole, mapping=mapping, delimiter=delimiter, default_region=default_region)


class _Replay(io.RawIOBase):
    """The stream as if its first chunk had not been read: sniffing must not
    need a seekable upload."""

    def __init__(self, head: bytes, rest: Readable) -> None:
        self._head, self._rest = head, rest

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._head:
            n = len(self._head) if size is None or size < 0 else size
            out, self._head = self._head[:n], self._head[n:]
            return out
        return self._rest.read(size) or b""
