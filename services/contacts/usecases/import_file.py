"""The volunteer imports a contacts file: the upload is kept aside, the
import runs in the background and answers at once; its progress and its
row-by-row report are read meanwhile.

Each chunk commits on its own, so a big file never holds a long write lock
and progress is visible to every replica. A file that fails midway (a broken
line at row 50 000, a crash) stops with the row and the reason; the rows
before it are in the book, and sending the same file again resumes it: rows
already imported are recognised by their address and left unchanged."""

from __future__ import annotations

import asyncio
import itertools
import os
import tempfile
from collections.abc import Awaitable, Callable

import anyio
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.contacts import book as book_ops
from services.contacts.book import Book
from services.contacts.errors import Invalid, NotFound, TooLarge
from services.contacts.importer import CHUNK, CountingReader, apply_chunk, open_report_row
from services.contacts.importing import ColumnMapping, ImportFormatError, parse_file
from services.contacts.store import ImportJob, ImportRow, Volunteer
from services.contacts.usecases._profile import republish
from services.contacts.usecases._unit import Contacts, Keys, in_book, opened, unit
from shared.events import utcnow

MAPPING = TypeAdapter(ColumnMapping)


def human_size(n: int) -> str:
    for unit_name, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit_name}"
    return f"{n} bytes"


async def start_import(ctx: Contacts, vol: Volunteer, read: Callable[[int], Awaitable[bytes]],
                       filename: str | None, mapping: str | None, delimiter: str | None) -> ImportJob:
    """Keep the upload (``read`` gives its chunks), create the job, start it."""
    column_mapping = None
    if mapping:
        try:
            column_mapping = MAPPING.validate_json(mapping)
        except ValidationError as exc:
            raise Invalid.field("body", "mapping", f"not a column mapping: {exc}") from exc
    limit = ctx.settings.max_import_bytes
    fd, path = tempfile.mkstemp(prefix="maillage-import-")
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"file: larger than the {human_size(limit)} limit; split it and import the parts")
                out.write(chunk)
        if size == 0:
            raise Invalid.field("body", "file", "the file is empty")
    except BaseException:
        os.unlink(path)
        raise

    def create(session: Session, book: Book) -> ImportJob:
        job = ImportJob(volunteer_id=book.volunteer_id, status="running", bytes_total=size)
        session.add(job)
        session.flush()
        return job

    job = await in_book(ctx, vol, create)

    async def work() -> None:
        await anyio.to_thread.run_sync(run_import, ctx.engine, ctx.keys, vol.id, job.id, path, filename,
                                       column_mapping, delimiter)
        await republish(ctx, vol.id)

    task = asyncio.create_task(work())
    ctx.background.add(task)
    task.add_done_callback(ctx.background.discard)
    return job


async def own_job(engine: Engine, vol: Volunteer, import_id: str) -> ImportJob:
    job = await unit(engine, lambda s: s.get(ImportJob, import_id))
    if job is None or job.volunteer_id != vol.id:
        raise NotFound("import")
    return job


async def report_rows(ctx: Contacts, vol: Volunteer, import_id: str, outcome: str | None, after: int,
                      limit: int) -> list[dict]:
    """The report's rows after row ``after``, rejected ones with their text (opened)."""
    await own_job(ctx.engine, vol, import_id)

    def load(session: Session, book: Book) -> list[dict]:
        stmt = select(ImportRow).where(ImportRow.import_id == import_id, ImportRow.row > after)
        if outcome:
            stmt = stmt.where(ImportRow.outcome == outcome)
        return [open_report_row(book, import_id, r) for r in session.exec(stmt.order_by(col(ImportRow.row)).limit(limit))]

    return await in_book(ctx, vol, load)


def run_import(engine: Engine, keys: Keys, volunteer_id: str, job_id: str,
               path: str, filename: str | None, mapping: ColumnMapping | None, delimiter: str | None) -> None:
    """The import itself, in a worker thread: a transaction per chunk."""
    with Session(engine, expire_on_commit=False) as session:
        job = session.get_one(ImportJob, job_id)
        book = opened(session, keys, session.get_one(Volunteer, volunteer_id))
        last_row = 0
        try:
            with open(path, "rb") as raw:
                reader = CountingReader(raw)
                rows = parse_file(reader, filename, mapping=mapping, delimiter=delimiter)
                while chunk := list(itertools.islice(rows, CHUNK)):
                    report = []
                    for outcome, (result, contact_id, *why) in zip(chunk, apply_chunk(session, book, chunk),
                                                                   strict=True):
                        sealed = (book.cipher.seal(f"import:{job_id}:{outcome.row}",
                                                   {"raw": outcome.raw, "error": why[0] if why else outcome.error})
                                  if result == "rejected" else None)
                        report.append({"import_id": job_id, "row": outcome.row, "outcome": result,
                                       "contact_id": contact_id, "sealed": sealed})
                        setattr(job, result, getattr(job, result) + 1)
                    book_ops.insert_rows(session, {ImportRow: report})
                    job.rows += len(chunk)
                    last_row = chunk[-1].row
                    job.bytes_read = reader.count
                    session.add(job)
                    session.commit()
            job.status, job.bytes_read = "done", job.bytes_total
        except ImportFormatError as exc:
            session.rollback()
            job = session.get_one(ImportJob, job_id)
            where = f"row {exc.row}: " if getattr(exc, "row", None) else ""
            job.status, job.error = "failed", f"{where}{exc}{resume_hint(job)}"
        except Exception as exc:  # never leave a job "running" forever
            session.rollback()
            job = session.get_one(ImportJob, job_id)
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


