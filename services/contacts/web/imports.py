"""Importing a file from the browser: upload, a progress bar while it
runs, then the row-by-row report."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import RedirectResponse

from services.contacts.api.deps import ContactsDep
from services.contacts.api.imports import ReportRow, status_of
from services.contacts.store import Volunteer
from services.contacts.usecases import import_file
from services.contacts.web.auth import web_volunteer
from services.contacts.web.refusals import REFUSALS, refusal
from shared.web.pages import render, site_of
from shared.web.session import csrf_protect

router = APIRouter(prefix="/app", include_in_schema=False, dependencies=[Depends(csrf_protect)])


@router.get("/import")
async def import_page(request: Request, _vol: Volunteer = Depends(web_volunteer)):
    return render(request, "import.html")


@router.post("/import")
async def upload(request: Request, ctx: ContactsDep, file: UploadFile = File(...), mapping: str = Form(default=""),
                 vol: Volunteer = Depends(web_volunteer)):
    try:
        job = await import_file.start_import(ctx, vol, file.read, file.filename, mapping.strip() or None, None)
    except REFUSALS as exc:
        code, errors = refusal(exc)
        return render(request, "import.html", code, errors=errors)
    return RedirectResponse(f"{site_of(request).prefix}/imports/{job.id}", status_code=303)


@router.get("/imports/{import_id}")
async def report(import_id: str, request: Request, ctx: ContactsDep, vol: Volunteer = Depends(web_volunteer)):
    job = status_of(await import_file.own_job(ctx.engine, vol, import_id))
    rows = [] if job.status == "running" else [
        ReportRow(**r) for r in await import_file.report_rows(ctx, vol, import_id, None, 0, 1000)]
    return render(request, "import_report.html", job=job, rows=rows)


@router.get("/imports/{import_id}/status")
async def progress(import_id: str, ctx: ContactsDep, vol: Volunteer = Depends(web_volunteer)):
    """For import.js's progress bar."""
    return status_of(await import_file.own_job(ctx.engine, vol, import_id)).model_dump(mode="json")
