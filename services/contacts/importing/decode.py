"""Bytes to text lines, lazily: exports arrive in whatever encoding the
volunteer's software chose, and can be tens of megabytes, so the encoding is
decided from the first chunk and the rest is decoded as it streams."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterator
from typing import Protocol

from services.contacts.importing.model import ImportFormatError

CHUNK_SIZE = 64 * 1024
MAX_LINE_LENGTH = 64 * 1024

_BOMS = (
    # UTF-32's little-endian BOM begins with UTF-16's: test it first.
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_EOL = re.compile(r"\r\n|\r|\n")


class Readable(Protocol):
    """What the parsers read: an upload, a file, or a wrapper that counts or replays one."""

    def read(self, size: int = -1, /) -> bytes: ...


def detect_encoding(head: bytes) -> tuple[str, int]:
    """(codec name, length of the BOM to skip). Without a BOM, UTF-8 if the
    head decodes as such, else Windows-1252: what Excel and Outlook write on
    French Windows. (``iter_lines`` still moves to Windows-1252 if the head
    was plain ASCII and later bytes are not UTF-8.)"""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return encoding, len(bom)
    try:
        # final=False: the chunk may end inside a multi-byte sequence
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "cp1252", 0
    return "utf-8", 0


def read_head(stream: Readable, size: int = CHUNK_SIZE) -> bytes:
    """At least ``size`` bytes unless the stream ends first: an upload or a
    pipe may return fewer per read, and a BOM cut in two goes unseen."""
    size = max(size, 4)  # the longest BOM
    parts, got = [], 0
    while got < size:
        part = stream.read(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def peek_text(head: bytes) -> str:
    """The head as text, for format sniffing only (never raises)."""
    encoding, bom = detect_encoding(head)
    return head[bom:].decode(encoding, errors="replace")


def iter_lines(
    stream: Readable, *, max_line_length: int = MAX_LINE_LENGTH, chunk_size: int = CHUNK_SIZE
) -> Iterator[str]:
    """Lines with their line endings kept (as the csv module wants them),
    ending in CRLF, LF or a lone CR."""
    head = read_head(stream, chunk_size)
    encoding, bom = detect_encoding(head)
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    chunk, eof = head[bom:], not head
    pending, line_no = "", 0
    ascii_so_far = True
    while True:
        try:
            text, bad = decoder.decode(chunk, final=eof), None
        except UnicodeDecodeError as e:
            if encoding == "utf-8" and not bom and ascii_so_far:
                # A pure ASCII head (English names first) could not tell
                # UTF-8 from Windows-1252; these bytes do. No byte before
                # them reads differently, so this chunk is simply decoded anew.
                encoding, decoder = "cp1252", codecs.getincrementaldecoder("cp1252")(errors="strict")
                continue
            # The lines before the bad bytes are good: hand them out, so the
            # error names the line that holds them.
            text, bad = e.object[: e.start].decode(encoding, errors="replace"), e
        ascii_so_far = ascii_so_far and chunk.isascii()
        pending += text
        start = 0
        for m in _EOL.finditer(pending):
            if m.group() == "\r" and m.end() == len(pending) and not eof:
                break  # its '\n' may be in the next chunk
            line_no += 1
            yield _checked(pending[start : m.end()], line_no, max_line_length)
            start = m.end()
        pending = pending[start:]
        if bad is not None:
            raise ImportFormatError(
                f"line {line_no + 1}: bytes that are not valid {encoding} text "
                f"({bad.object[bad.start : bad.end]!r}); save the file as UTF-8 and try again",
                line=line_no + 1,
            )
        if len(pending) > max_line_length:
            _checked(pending, line_no + 1, max_line_length)
        if eof:
            if pending:
                yield _checked(pending, line_no + 1, max_line_length)
            return
        chunk = stream.read(chunk_size) or b""
        eof = not chunk


def _checked(line: str, line_no: int, max_line_length: int) -> str:
    if len(line.rstrip("\r\n")) > max_line_length:
        raise ImportFormatError(
            f"line {line_no} is longer than {max_line_length} characters", line=line_no
        )
    if "\x00" in line:
        raise ImportFormatError(
            f"line {line_no} contains a NUL byte: this is a binary file (a spreadsheet?), "
            "not CSV or vCard text",
            line=line_no,
        )
    return line
