"""The contact book's pages: list, search and filter, select and tag many,
one contact's page (edit, consent, invite, delete), export."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, RedirectResponse
from pydantic import ValidationError

from services.contacts.api import book as book_api
from services.contacts.domain import Consent, ContactPatch
from services.contacts.store import Volunteer
from services.contacts.web.auth import web_volunteer
from services.contacts.web.inbox import language_labels
from shared.errors import field_error
from shared.web.forms import blank_to_none, lines, words
from shared.web.pages import problems, render, site_of
from shared.web.session import csrf_protect

router = APIRouter(prefix="/app/contacts", include_in_schema=False, dependencies=[Depends(csrf_protect)])
CONSENTS = [c.value for c in Consent]


def consent_of(value: str | None) -> Consent | None:
    if not value:
        return None
    try:
        return Consent(value)
    except ValueError:
        raise field_error("query", "consent", f"one of {', '.join(CONSENTS)}") from None


@router.get("")
async def list_page(request: Request, vol: Volunteer = Depends(web_volunteer)):
    return await listing(request, vol)


@router.post("")
async def search(request: Request, vol: Volunteer = Depends(web_volunteer)):
    """Search and filters come by POST: words of a name or an address must
    not sit in a URL (history, logs, a shared link)."""
    form = await request.form()
    q, interest, consent, cursor = (str(form.get(k) or "")[:limit] for k, limit in
                                    (("q", 100), ("interest", 64), ("consent", 16), ("cursor", 500)))
    return await listing(request, vol, q or None, interest or None, consent or None, cursor or None)


async def listing(request: Request, vol: Volunteer, q: str | None = None, interest: str | None = None,
                  consent: str | None = None, cursor: str | None = None, status_code: int = 200, **extra):
    page = await book_api.list_contacts(request, q or None, interest or None, None, consent_of(consent), None,
                                        cursor, 50, vol)
    taxonomy = await book_api.list_taxonomy(request, vol)
    return render(request, "book.html", status_code, page=page, taxonomy=taxonomy, labels=await language_labels(request),
                  q=q or "", interest=interest or "", consent=consent or "", consents=CONSENTS, **extra)


@router.post("/bulk-tag")
async def bulk_tag(request: Request, vol: Volunteer = Depends(web_volunteer)):
    form = await request.form()
    action = "remove" if form.get("action") == "remove" else "add"
    try:
        body = book_api.BulkTagIn(contact_ids=form.getlist("ids"), kind=form.get("kind") or "tag",
                                  **{action: words(form.get("words"))})
        if not body.add and not body.remove:
            raise field_error("body", "words", "write at least one word")
        await book_api.bulk_tag(body, request, vol)
    except (ValidationError, HTTPException) as exc:
        return await listing(request, vol, status_code=getattr(exc, "status_code", 422), errors=problems(exc))
    return RedirectResponse(f"{site_of(request).prefix}/contacts", status_code=303)


@router.get("/export")
async def export(request: Request, format: Literal["json", "csv"] = "csv", vol: Volunteer = Depends(web_volunteer)):
    return await book_api.export_book(request, format, vol)


async def contact_page(request: Request, contact_id: str, vol: Volunteer, status_code: int = 200, **extra):
    contact = await book_api.get_contact(contact_id, request, vol)
    taxonomy = await book_api.list_taxonomy(request, vol)
    return render(request, "contact.html", status_code, contact=contact, taxonomy=taxonomy,
                  labels=await language_labels(request), consents=CONSENTS, **extra)


@router.get("/{contact_id}")
async def show(contact_id: str, request: Request, vol: Volunteer = Depends(web_volunteer)):
    return await contact_page(request, contact_id, vol)


async def acting(request: Request, contact_id: str, vol: Volunteer, work, back: str | None = None):
    """Run an API call; a refusal shows the contact's page again, naming it."""
    try:
        await work()
    except (ValidationError, HTTPException) as exc:
        code = exc.status_code if isinstance(exc, HTTPException) else 422
        if code == 404:
            raise
        return await contact_page(request, contact_id, vol, code, errors=problems(exc))
    return RedirectResponse(back or f"{site_of(request).prefix}/contacts/{contact_id}", status_code=303)


@router.post("/{contact_id}")
async def edit(contact_id: str, request: Request, vol: Volunteer = Depends(web_volunteer)):
    form = await request.form()

    async def work():
        patch = ContactPatch(name=form.get("name"), emails=lines(form.get("emails")),
                             phones=lines(form.get("phones")), interests=words(form.get("interests")),
                             tags=words(form.get("tags")), commune=blank_to_none(form.get("commune")),
                             region=blank_to_none(form.get("region")), notes=blank_to_none(form.get("notes")))
        await book_api.edit_contact(contact_id, patch, request, vol)

    return await acting(request, contact_id, vol, work)


@router.post("/{contact_id}/consent")
async def consent(contact_id: str, request: Request, vol: Volunteer = Depends(web_volunteer)):
    form = await request.form()

    async def work():
        body = book_api.ConsentIn(state=form.get("state"), proof=blank_to_none(form.get("proof")))
        await book_api.record_consent(contact_id, body, request, vol)

    return await acting(request, contact_id, vol, work)


@router.post("/{contact_id}/invite")
async def invite(contact_id: str, request: Request, vol: Volunteer = Depends(web_volunteer)):
    return await acting(request, contact_id, vol,
                        lambda: book_api.invite_contact(contact_id, book_api.InviteContactIn(), request, vol))


@router.post("/{contact_id}/delete")
async def delete(contact_id: str, request: Request, vol: Volunteer = Depends(web_volunteer)):
    return await acting(request, contact_id, vol, lambda: book_api.delete_contact(contact_id, request, vol),
                        back=f"{site_of(request).prefix}/contacts")


@router.get("/{contact_id}/export")
async def export_one(contact_id: str, request: Request, vol: Volunteer = Depends(web_volunteer)):
    data = await book_api.export_contact(contact_id, request, vol)
    return JSONResponse(data, headers={"Content-Disposition": 'attachment; filename="contact.json"'})
