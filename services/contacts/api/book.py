"""The volunteer's book: add, search, filter, edit, tag, consent, invite,
export, delete. Each route calls one use case."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Query, Response, status
from pydantic import BaseModel, ConfigDict, Field

from services.contacts.api.deps import ContactsDep, CurrentVolunteer
from services.contacts.book import PageQuery
from services.contacts.domain import Consent, ContactIn, ContactPatch
from services.contacts.usecases import edit_book, read_book
from services.contacts.usecases.export_book import export_book as export_all
from services.contacts.usecases.invite_contact import invite_contact as invite
from shared.events import InterestName

router = APIRouter(tags=["my contacts"])


class ContactOut(BaseModel):
    id: str
    name: str
    emails: list[str]
    phones: list[str]
    handles: dict[str, str]
    locale: str | None
    commune: str | None
    region: str | None
    interests: list[str]
    tags: list[str]
    notes: str | None
    consent: dict[str, dict]
    history: list[dict]
    created_at: str
    updated_at: str


class ContactPage(BaseModel):
    items: list[ContactOut]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last")
    total: int = Field(description="contacts matching the filters")


class BulkTagIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_ids: list[str] = Field(min_length=1, max_length=10_000)
    add: list[InterestName] = Field(default_factory=list, max_length=50)
    remove: list[InterestName] = Field(default_factory=list, max_length=50)
    kind: Literal["interest", "tag"] = "tag"


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    state: Consent
    proof: str | None = Field(default=None, max_length=1000,
                              description="how and when the contact agreed (required to confirm)")


class InviteContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_id: str | None = Field(default=None, description="the campaign message that prompted it")


class TermOut(BaseModel):
    name: str
    label_fr: str
    label_en: str


@router.post("/contacts", status_code=status.HTTP_201_CREATED, summary="Add a contact to my book")
async def add_contact(body: ContactIn, ctx: ContactsDep, vol: CurrentVolunteer) -> ContactOut:
    return ContactOut(**await edit_book.add_contact(ctx, vol, body))


@router.get("/contacts", summary="My contacts: search, filter, page through")
async def list_contacts(
    ctx: ContactsDep,
    vol: CurrentVolunteer,
    q: str | None = Query(default=None, max_length=100, description="words of a name or email, as prefixes"),
    interest: str | None = Query(default=None, max_length=64),
    tag: str | None = Query(default=None, max_length=64),
    consent: Consent | None = None,
    channel: str | None = Query(default=None, max_length=32, description="email, phone, mastodon, bluesky…"),
    cursor: str | None = Query(default=None, max_length=500),
    limit: int = Query(default=50, ge=1, le=500),
) -> ContactPage:
    query = PageQuery(q=q, interest=interest, tag=tag, consent=consent, channel=channel, cursor=cursor, limit=limit)
    items, next_cursor, total = await read_book.page(ctx, vol, query)
    return ContactPage(items=[ContactOut(**c) for c in items], next_cursor=next_cursor, total=total)


@router.get("/taxonomy", summary="The campaign's interests, to tag contacts with")
async def list_taxonomy(ctx: ContactsDep, vol: CurrentVolunteer) -> list[TermOut]:
    return [TermOut(name=t.name, label_fr=t.label_fr, label_en=t.label_en)
            for t in await read_book.taxonomy(ctx, vol)]


@router.get("/contacts/export", summary="Export my whole book (JSON or CSV)")
async def export_book(ctx: ContactsDep, vol: CurrentVolunteer, format: Literal["json", "csv"] = "json") -> Response:
    return attachment(await export_all(ctx, vol, format), format)


def attachment(body: str, format: Literal["json", "csv"]) -> Response:
    media = "application/json" if format == "json" else "text/csv; charset=utf-8"
    return Response(body, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="contacts.{format}"'})


@router.get("/contacts/{contact_id}", summary="One of my contacts, with consent and history")
async def get_contact(contact_id: str, ctx: ContactsDep, vol: CurrentVolunteer) -> ContactOut:
    return ContactOut(**await read_book.contact(ctx, vol, contact_id))


@router.get("/contacts/{contact_id}/export", summary="Everything my book holds on one contact (JSON)")
async def export_contact(contact_id: str, ctx: ContactsDep, vol: CurrentVolunteer) -> dict:
    return await read_book.contact(ctx, vol, contact_id)


@router.patch("/contacts/{contact_id}", summary="Edit a contact")
async def edit_contact(contact_id: str, body: ContactPatch, ctx: ContactsDep, vol: CurrentVolunteer) -> ContactOut:
    return ContactOut(**await edit_book.edit_contact(ctx, vol, contact_id, body))


@router.post("/contacts/bulk-tag", summary="Add or remove tags or interests on many contacts")
async def bulk_tag(body: BulkTagIn, ctx: ContactsDep, vol: CurrentVolunteer) -> dict:
    changed = await edit_book.bulk_tag(ctx, vol, body.contact_ids, body.kind, body.add, body.remove)
    return {"contacts": len(body.contact_ids), "changed": changed}


@router.delete("/contacts/{contact_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a contact")
async def delete_contact(contact_id: str, ctx: ContactsDep, vol: CurrentVolunteer) -> Response:
    await edit_book.delete_contact(ctx, vol, contact_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/contacts/{contact_id}/consent/email", summary="Record a contact's email consent")
async def record_consent(contact_id: str, body: ConsentIn, ctx: ContactsDep, vol: CurrentVolunteer) -> ContactOut:
    """Confirm (with a proof: how and when they agreed) or withdraw. A
    withdrawal can only be undone by the contact, through their own link."""
    return ContactOut(**await edit_book.record_consent(ctx, vol, contact_id, body.state, body.proof))


@router.post("/contacts/{contact_id}/invite", summary="Invite a contact to receive my messages (once)")
async def invite_contact(contact_id: str, body: InviteContactIn, ctx: ContactsDep,
                         vol: CurrentVolunteer) -> ContactOut:
    """Sends one invitation email saying who writes, on whose behalf, where
    the address came from, with links to accept or refuse. Only an unknown
    contact can be invited, and only once."""
    return ContactOut(**await invite(ctx, vol, contact_id, body.message_id))
