"""Importing a file from the browser: upload, a progress bar while it
runs, then the row-by-row report."""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import RedirectResponse

from services.contacts.api import imports as imports_api
from services.contacts.store import Volunteer
from services.contacts.web.auth import web_volunteer
from shared.web.pages import problems, render, site_of
from shared.web.session import csrf_protect

router = APIRouter(prefix="/app", include_in_schema=False, dependencies=[Depends(csrf_protect)])


@router.get("/import")
async def import_page(request: Request, _vol: Volunteer = Depends(web_volunteer)):
    return render(request, "import.html")


@router.post("/import")
async def upload(request: Request, file: UploadFile = File(...), mapping: str = Form(default=""),
                 vol: Volunteer = Depends(web_volunteer)):
    try:
        job = await imports_api.start_import(request, file, mapping.strip() or None, None, vol)
    except HTTPException as exc:
        return render(request, "import.html", exc.status_code, errors=problems(exc))
    return RedirectResponse(f"{site_of(request).prefix}/imports/{job.id}", status_code=303)


@router.get("/imports/{import_id}")
async def report(import_id: str, request: Request, vol: Volunteer = Depends(web_volunteer)):
    job = await imports_api.import_status(import_id, request, vol)
    rows = [] if job.status == "running" else await imports_api.import_rows(import_id, request, None, 0, 1000, vol)
    return render(request, "import_report.html", job=job, rows=rows)


@router.get("/imports/{import_id}/status")
async def progress(import_id: str, request: Request, vol: Volunteer = Depends(web_volunteer)):
    """For import.js's progress bar."""
    return (await imports_api.import_status(import_id, request, vol)).model_dump(mode="json")
