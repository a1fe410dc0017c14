"""Importing a contacts file: upload, follow the progress, read the report."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, File, Form, Query, UploadFile, status
from pydantic import BaseModel, Field

from services.contacts.api.deps import ContactsDep, CurrentVolunteer
from services.contacts.store import ImportJob
from services.contacts.usecases import import_file

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


@router.post("/imports", status_code=status.HTTP_202_ACCEPTED, summary="Import a contacts file")
async def start_import(
    ctx: ContactsDep,
    vol: CurrentVolunteer,
    file: UploadFile = File(description="Google or Outlook CSV, any CSV (with mapping), or vCard 2.1/3.0/4.0"),
    mapping: str | None = Form(default=None, description='JSON column mapping for a generic CSV, e.g. '
                               '{"display_name": "Nom", "emails": ["Courriel"], "interests": ["Thèmes"]}'),
    delimiter: str | None = Form(default=None, pattern="^[,;\t|]$"),
) -> ImportStatus:
    """Starts the import and answers at once; follow it at ``GET /imports/{id}``."""
    return status_of(await import_file.start_import(ctx, vol, file.read, file.filename, mapping, delimiter))


@router.get("/imports/{import_id}", summary="Progress and counts of an import")
async def import_status(import_id: str, ctx: ContactsDep, vol: CurrentVolunteer) -> ImportStatus:
    return status_of(await import_file.own_job(ctx.engine, vol, import_id))


@router.get("/imports/{import_id}/rows", summary="The row-by-row report (rejected rows with their text)")
async def import_rows(
    import_id: str, ctx: ContactsDep, vol: CurrentVolunteer,
    outcome: str | None = Query(default=None, pattern="^(imported|merged|unchanged|rejected)$"),
    # le: the column is an integer; a larger number was an overflow in the database (a 500)
    after: int = Query(default=0, ge=0, le=2**31 - 1, description="rows after this row number"),
    limit: int = Query(default=200, ge=1, le=1000),
) -> list[ReportRow]:
    return [ReportRow(**r) for r in await import_file.report_rows(ctx, vol, import_id, outcome, after, limit)]
