"""The contact book's pages: list, search and filter, select and tag many,
one contact's page (edit, consent, invite, delete), export. They call the
API's use cases, so the rules (scoping, consent, taxonomy) are the same."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse

from services.contacts.api.book import BulkTagIn, ConsentIn, ContactOut, ContactPage, attachment
from services.contacts.api.deps import ContactsDep
from services.contacts.book import PageQuery
from services.contacts.domain import Consent, ContactPatch
from services.contacts.errors import Invalid
from services.contacts.store import Volunteer
from services.contacts.usecases import edit_book, read_book
from services.contacts.usecases._unit import Contacts
from services.contacts.usecases.export_book import export_book
from services.contacts.usecases.invite_contact import invite_contact
from services.contacts.web.auth import web_volunteer
from services.contacts.web.inbox import language_labels
from services.contacts.web.refusals import REFUSALS, refusal
from shared.web.forms import blank_to_none, field, lines, words
from shared.web.pages import render, site_of
from shared.web.session import csrf_protect

router = APIRouter(prefix="/app/contacts", include_in_schema=False, dependencies=[Depends(csrf_protect)])
CONSENTS = [c.value for c in Consent]
WebVolunteer = Depends(web_volunteer)


def consent_of(value: str | None) -> Consent | None:
    if not value:
        return None
    try:
        return Consent(value)
    except ValueError:
        raise Invalid.field("query", "consent", f"one of {', '.join(CONSENTS)}") from None


@router.get("")
async def list_page(request: Request, ctx: ContactsDep, vol: Volunteer = WebVolunteer):
    return await listing(request, ctx, vol)


@router.post("")
async def search(request: Request, ctx: ContactsDep, vol: Volunteer = WebVolunteer):
    """Search and filters come by POST: words of a name or an address must
    not sit in a URL (history, logs, a shared link)."""
    form = await request.form()
    q, interest, consent, cursor = (str(form.get(k) or "")[:limit] for k, limit in
                                    (("q", 100), ("interest", 64), ("consent", 16), ("cursor", 500)))
    return await listing(request, ctx, vol, q or None, interest or None, consent or None, cursor or None)


async def listing(request: Request, ctx: Contacts, vol: Volunteer, q: str | None = None, interest: str | None = None,
                  consent: str | None = None, cursor: str | None = None, status_code: int = 200, **extra):
    query = PageQuery(q=q or None, interest=interest or None, consent=consent_of(consent), cursor=cursor, limit=50)
    items, next_cursor, total = await read_book.page(ctx, vol, query)
    page = ContactPage(items=[ContactOut(**c) for c in items], next_cursor=next_cursor, total=total)
    taxonomy = await read_book.taxonomy(ctx, vol)
    return render(request, "book.html", status_code, page=page, taxonomy=taxonomy, labels=await language_labels(request),
                  q=q or "", interest=interest or "", consent=consent or "", consents=CONSENTS, **extra)


@router.post("/bulk-tag")
async def bulk_tag(request: Request, ctx: ContactsDep, vol: Volunteer = WebVolunteer):
    form = await request.form()
    action = "remove" if form.get("action") == "remove" else "add"
    try:
        body = BulkTagIn(contact_ids=form.getlist("ids"), kind=form.get("kind") or "tag",
                         **{action: words(field(form, "words"))})
        if not body.add and not body.remove:
            raise Invalid.field("body", "words", "write at least one word")
        await edit_book.bulk_tag(ctx, vol, body.contact_ids, body.kind, body.add, body.remove)
    except REFUSALS as exc:
        code, errors = refusal(exc)
        return await listing(request, ctx, vol, status_code=code, errors=errors)
    return RedirectResponse(f"{site_of(request).prefix}/contacts", status_code=303)


@router.get("/export")
async def export(ctx: ContactsDep, format: Literal["json", "csv"] = "csv", vol: Volunteer = WebVolunteer):
    return attachment(await export_book(ctx, vol, format), format)


async def contact_page(request: Request, ctx: Contacts, contact_id: str, vol: Volunteer, status_code: int = 200,
                       **extra):
    contact = ContactOut(**await read_book.contact(ctx, vol, contact_id))
    taxonomy = await read_book.taxonomy(ctx, vol)
    return render(request, "contact.html", status_code, contact=contact, taxonomy=taxonomy,
                  labels=await language_labels(request), consents=CONSENTS, **extra)


@router.get("/{contact_id}")
async def show(contact_id: str, request: Request, ctx: ContactsDep, vol: Volunteer = WebVolunteer):
    return await contact_page(request, ctx, contact_id, vol)


async def acting(request: Request, ctx: Contacts, contact_id: str, vol: Volunteer, work, back: str | None = None):
    """Run a use case; a refusal shows the contact's page again, naming it."""
    try:
        await work()
    except REFUSALS as exc:
        code, errors = refusal(exc)
        if code == 404:
            raise
        return await contact_page(request, ctx, contact_id, vol, code, errors=errors)
    return RedirectResponse(back or f"{site_of(request).prefix}/contacts/{contact_id}", status_code=303)


@router.post("/{contact_id}")
async def edit(contact_id: str, request: Request, ctx: ContactsDep, vol: Volunteer = WebVolunteer):
    form = await request.form()

    async def work():
        patch = ContactPatch(name=form.get("name"), emails=lines(field(form, "emails")),
                             phones=lines(field(form, "phones")), interests=words(field(form, "interests")),
                             tags=words(field(form, "tags")), commune=blank_to_none(field(form, "commune")),
                             region=blank_to_none(field(form, "region")), notes=blank_to_none(field(form, "notes")))
        await edit_book.edit_contact(ctx, vol, contact_id, patch)

    return await acting(request, ctx, contact_id, vol, work)


@router.post("/{contact_id}/consent")
async def consent(contact_id: str, request: Request, ctx: ContactsDep, vol: Volunteer = WebVolunteer):
    form = await request.form()

    async def work():
        body = ConsentIn(state=form.get("state"), proof=blank_to_none(field(form, "proof")))
        await edit_book.record_consent(ctx, vol, contact_id, body.state, body.proof)

    return await acting(request, ctx, contact_id, vol, work)


@router.post("/{contact_id}/invite")
async def invite(contact_id: str, request: Request, ctx: ContactsDep, vol: Volunteer = WebVolunteer):
    return await acting(request, ctx, contact_id, vol, lambda: invite_contact(ctx, vol, contact_id, None))


@router.post("/{contact_id}/delete")
async def delete(contact_id: str, request: Request, ctx: ContactsDep, vol: Volunteer = WebVolunteer):
    return await acting(request, ctx, contact_id, vol, lambda: edit_book.delete_contact(ctx, vol, contact_id),
                        back=f"{site_of(request).prefix}/contacts")


@router.get("/{contact_id}/export")
async def export_one(contact_id: str, ctx: ContactsDep, vol: Volunteer = WebVolunteer):
    data = await read_book.contact(ctx, vol, contact_id)
    return JSONResponse(data, headers={"Content-Disposition": 'attachment; filename="contact.json"'})
