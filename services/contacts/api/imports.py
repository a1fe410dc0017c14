"""Importing a contacts file: upload, follow the progress, read the report."""

from __future__ import annotations

import asyncio
import os
import tempfile
from datetime import datetime

import anyio
from fastapi import APIRouter, Depends, File, Form, HTTPException, Query, Request, UploadFile, status
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from sqlmodel import Session, select

from services.contacts.api.accounts import publish_profile
from services.contacts.api.deps import current_volunteer, keys, not_found, settings, with_book
from services.contacts.book import Book
from services.contacts.importer import open_report_row, run_import
from services.contacts.importing import ColumnMapping
from services.contacts.store import ImportJob, ImportRow, Volunteer
from shared.db import in_session
from shared.errors import field_error

router = APIRouter(tags=["import"])


class ImportStatus(BaseModel):
    id: str
    status: str = Field(description="running, done or failed")
    progress: float = Field(description="0 to 1, by bytes read")
    rows: int
    imported: int
    merged: int
    unchanged: int
    rejected: int
    error: str | None
    created_at: datetime
    finished_at: datetime | None


class ReportRow(BaseModel):
    row: int
    outcome: str
    contact_id: str | None
    raw: str | None = None
    error: str | None = None


def status_of(job: ImportJob) -> ImportStatus:
    progress = 1.0 if job.status != "running" else (job.bytes_read / job.bytes_total if job.bytes_total else 0.0)
    return ImportStatus(id=job.id, status=job.status, progress=round(progress, 4), rows=job.rows,
                        imported=job.imported, merged=job.merged, unchanged=job.unchanged,
                        rejected=job.rejected, error=job.error, created_at=job.created_at,
                        finished_at=job.finished_at)


MAPPING = TypeAdapter(ColumnMapping)


def human_size(n: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


@router.post("/imports", status_code=status.HTTP_202_ACCEPTED, summary="Import a contacts file")
async def start_import(
    request: Request,
    file: UploadFile = File(description="Google or Outlook CSV, any CSV (with mapping), or vCard 2.1/3.0/4.0"),
    mapping: str | None = Form(default=None, description='JSON column mapping for a generic CSV, e.g. '
                               '{"display_name": "Nom", "emails": ["Courriel"], "interests": ["Thèmes"]}'),
    delimiter: str | None = Form(default=None, pattern="^[,;\t|]$"),
    vol: Volunteer = Depends(current_volunteer),
) -> ImportStatus:
    """Starts the import and answers at once; follow it at ``GET /imports/{id}``."""
    cfg, k = settings(request), keys(request)
    column_mapping = None
    if mapping:
        try:
            column_mapping = MAPPING.validate_json(mapping)
        except ValidationError as exc:
            raise field_error("body", "mapping", f"not a column mapping: {exc}") from exc
    fd, path = tempfile.mkstemp(prefix="maillage-import-")
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await file.read(1 << 20):
                size += len(chunk)
                if size > cfg.max_import_bytes:
                    raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                        detail=f"file: larger than the {human_size(cfg.max_import_bytes)} "
                                               "limit; split it and import the parts")
                out.write(chunk)
        if size == 0:
            raise field_error("body", "file", "the file is empty")
    except BaseException:
        os.unlink(path)
        raise

    def create(session: Session, book: Book) -> ImportJob:
        job = ImportJob(volunteer_id=book.volunteer_id, status="running", bytes_total=size)
        session.add(job)
        session.commit()
        return job

    job = await with_book(request, vol, create)

    async def work() -> None:
        await anyio.to_thread.run_sync(run_import, request.app.state.engine, k.master, k.index, vol.id,
                                       job.id, path, file.filename, column_mapping, delimiter)
        await publish_profile(request, vol.id)

    task = asyncio.create_task(work())
    request.app.state.background.add(task)
    task.add_done_callback(request.app.state.background.discard)
    return status_of(job)


async def own_job(request: Request, vol: Volunteer, import_id: str) -> ImportJob:
    job = await in_session(request.app.state.engine, lambda s: s.get(ImportJob, import_id))
    if job is None or job.volunteer_id != vol.id:
        raise not_found("import")
    return job


@router.get("/imports/{import_id}", summary="Progress and counts of an import")
async def import_status(import_id: str, request: Request, vol: Volunteer = Depends(current_volunteer)) -> ImportStatus:
    return status_of(await own_job(request, vol, import_id))


@router.get("/imports/{import_id}/rows", summary="The row-by-row report (rejected rows with their text)")
async def import_rows(
    import_id: str, request: Request,
    outcome: str | None = Query(default=None, pattern="^(imported|merged|unchanged|rejected)$"),
    # le: the column is an integer; a larger number was an overflow in the database (a 500)
    after: int = Query(default=0, ge=0, le=2**31 - 1, description="rows after this row number"),
    limit: int = Query(default=200, ge=1, le=1000),
    vol: Volunteer = Depends(current_volunteer),
) -> list[ReportRow]:
    await own_job(request, vol, import_id)

    def load(session: Session, book: Book) -> list[ReportRow]:
        stmt = select(ImportRow).where(ImportRow.import_id == import_id, ImportRow.row > after)
        if outcome:
            stmt = stmt.where(ImportRow.outcome == outcome)
        rows = session.exec(stmt.order_by(ImportRow.row).limit(limit))
        return [ReportRow(**open_report_row(book, import_id, r)) for r in rows]

    return await with_book(request, vol, load)
