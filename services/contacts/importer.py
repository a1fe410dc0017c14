"""Running an import: the parsed rows of one file become contacts, in
chunks, with the outcome of every row kept for the report.

Each chunk commits on its own, so a big file never holds a long write lock
and progress is visible to every replica. A file that fails midway (a broken
line at row 50 000, a crash) stops with the row and the reason; the rows
before it are in the book, and sending the same file again resumes it: rows
already imported are recognised by their address and left unchanged."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from typing import BinaryIO

from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.contacts import book as book_ops
from services.contacts.book import Book, DuplicateAddress, open_book
from services.contacts.crypto import MasterKey
from services.contacts.importing import ColumnMapping, ImportFormatError, RowOutcome, parse_file
from services.contacts.store import Contact, ImportJob, ImportRow, Volunteer
from shared.blind_index import BlindIndex
from shared.events import utcnow

CHUNK = 500


class CountingReader:
    """Counts the bytes the parser has read, for the progress bar."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw, self.count = raw, 0

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.count += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        data = self.raw.readline(size)
        self.count += len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")

    def readable(self) -> bool:
        return True


def apply_row(session: Session, book: Book, outcome: RowOutcome) -> tuple[str, str | None]:
    """One parsed row into the book: (outcome, contact id)."""
    if outcome.draft is None:
        return "rejected", None
    draft = outcome.draft
    existing = book_ops.find_by_addresses(session, book, list(draft.emails), list(draft.phones))
    if existing:
        changed = book_ops.merge_draft(session, book, session.get(Contact, existing), draft)
        return ("merged" if changed else "unchanged"), existing
    try:
        return "imported", book_ops.create_contact(session, book, draft).id
    except DuplicateAddress as exc:  # found by another address of the same row
        return "unchanged", exc.contact_id


def run_import(engine: Engine, master: MasterKey, index: BlindIndex, volunteer_id: str, job_id: str,
               path: str, filename: str | None, mapping: ColumnMapping | None, delimiter: str | None) -> None:
    with Session(engine, expire_on_commit=False) as session:
        job = session.get(ImportJob, job_id)
        book = open_book(session, master, index, session.get(Volunteer, volunteer_id))
        last_row = 0
        try:
            with open(path, "rb") as raw:
                reader = CountingReader(raw)
                rows = parse_file(reader, filename, mapping=mapping, delimiter=delimiter)
                while chunk := list(itertools.islice(rows, CHUNK)):
                    for outcome in chunk:
                        last_row = outcome.row
                        result, contact_id = apply_row(session, book, outcome)
                        sealed = (book.cipher.seal(f"import:{job_id}:{outcome.row}",
                                                   {"raw": outcome.raw, "error": outcome.error})
                                  if result == "rejected" else None)
                        session.add(ImportRow(import_id=job_id, row=outcome.row, outcome=result,
                                              contact_id=contact_id, sealed=sealed))
                        job.rows += 1
                        setattr(job, result, getattr(job, result) + 1)
                    job.bytes_read = reader.count
                    session.add(job)
                    session.commit()
            job.status, job.bytes_read = "done", job.bytes_total
        except ImportFormatError as exc:
            session.rollback()
            job = session.get(ImportJob, job_id)
            where = f"row {exc.row}: " if getattr(exc, "row", None) else ""
            job.status, job.error = "failed", f"{where}{exc}{resume_hint(job)}"
        except Exception as exc:  # never leave a job "running" forever
            session.rollback()
            job = session.get(ImportJob, job_id)
            job.status = "failed"
            job.error = f"stopped after row {last_row} ({type(exc).__name__}){resume_hint(job)}"
        finally:
            job.finished_at = utcnow()
            session.add(job)
            session.commit()
            os.unlink(path)


def resume_hint(job: ImportJob) -> str:
    if not job.rows:
        return "; nothing was imported"
    return (f"; the {job.rows} rows before it are in your book — fix the file and send it again: "
            "rows already imported are recognised and left unchanged")


def open_report_row(book: Book, job_id: str, row: ImportRow) -> dict:
    detail = book.cipher.open(f"import:{job_id}:{row.row}", row.sealed) if row.sealed else {}
    return {"row": row.row, "outcome": row.outcome, "contact_id": row.contact_id, **detail}
