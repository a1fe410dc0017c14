"""The volunteer's book: add, search, filter, edit, tag, consent, invite,
export, delete."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, select

from services.contacts import book as book_ops
from services.contacts import domain
from services.contacts.api.accounts import publish_profile
from services.contacts.api.deps import conflict, current_volunteer, keys, not_found, settings, with_book
from services.contacts.book import Book, DuplicateAddress, PageQuery
from services.contacts.domain import Consent, ConsentRuleError, ConsentSource, ContactIn, ContactPatch
from services.contacts.importing.export import write_contacts_csv
from services.contacts.store import CampaignMessage, ConsentRecord, Contact, TaxonomyTerm, Volunteer
from shared.catalogue import EMAIL_JOB
from shared.errors import field_error
from shared.events import Channel, EmailJob, InterestName, OpenedEmailJob
from shared.sealed import seal_email

router = APIRouter(tags=["my contacts"])
T = TypeVar("T")


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


async def changing_book(request: Request, vol: Volunteer, work: Callable[[Session, Book], T]) -> T:
    """A change to the book, then the profile it implies, republished."""
    result = await with_book(request, vol, work)
    await publish_profile(request, vol.id)
    return result


def check_taxonomy(session: Session, words: list[str], field: str = "interests") -> None:
    if unknown := domain.unknown_interests(words, book_ops.taxonomy(session)):
        raise field_error("body", field, f"not in the campaign's interests: {', '.join(unknown)} "
                                         "(use a tag for your own words)")


def already_in_book(exc: DuplicateAddress) -> HTTPException:
    return conflict(f"{exc.kind}s: this address is already in your book (contact {exc.contact_id})")


def _out(session: Session, book: Book, contact: Contact) -> ContactOut:
    return ContactOut(**book_ops.describe(session, book, contact))


def _own(session: Session, book: Book, contact_id: str) -> Contact:
    contact = session.get(Contact, contact_id)
    if contact is None or contact.volunteer_id != book.volunteer_id:
        raise not_found("contact")
    return contact


@router.post("/contacts", status_code=status.HTTP_201_CREATED, summary="Add a contact to my book")
async def add_contact(body: ContactIn, request: Request, vol: Volunteer = Depends(current_volunteer)) -> ContactOut:
    if not body.emails and not body.phones:
        raise field_error("body", "emails", "give an email or a phone")

    def add(session: Session, book: Book) -> ContactOut:
        check_taxonomy(session, body.interests)
        try:
            contact = book_ops.create_contact(session, book, body, body.consent, body.consent_proof)
        except DuplicateAddress as exc:
            raise already_in_book(exc) from exc
        except domain.AddressBlocked as exc:
            raise field_error("body", "consent", str(exc)) from exc
        except ConsentRuleError as exc:
            raise field_error("body", "consent_proof", str(exc)) from exc
        session.commit()
        return _out(session, book, contact)

    return await changing_book(request, vol, add)


@router.get("/contacts", summary="My contacts: search, filter, page through")
async def list_contacts(
    request: Request,
    q: str | None = Query(default=None, max_length=100, description="words of a name or email, as prefixes"),
    interest: str | None = Query(default=None, max_length=64),
    tag: str | None = Query(default=None, max_length=64),
    consent: Consent | None = None,
    channel: str | None = Query(default=None, max_length=32, description="email, phone, mastodon, bluesky…"),
    cursor: str | None = Query(default=None, max_length=500),
    limit: int = Query(default=50, ge=1, le=500),
    vol: Volunteer = Depends(current_volunteer),
) -> ContactPage:
    query = PageQuery(q=q, interest=interest, tag=tag, consent=consent, channel=channel, cursor=cursor, limit=limit)

    def load(session: Session, book: Book) -> ContactPage:
        try:
            rows, next_cursor = book_ops.page(session, book, query)
        except ValueError as exc:
            raise field_error("query", "cursor", str(exc)) from exc
        total = book_ops.count_matching(session, book, query)
        return ContactPage(items=[_out(session, book, c) for c in rows], next_cursor=next_cursor, total=total)

    return await with_book(request, vol, load)


class TermOut(BaseModel):
    name: str
    label_fr: str
    label_en: str


@router.get("/taxonomy", summary="The campaign's interests, to tag contacts with")
async def list_taxonomy(request: Request, vol: Volunteer = Depends(current_volunteer)) -> list[TermOut]:
    def load(session: Session) -> list[TermOut]:
        return [TermOut(name=t.name, label_fr=t.label_fr, label_en=t.label_en)
                for t in session.exec(select(TaxonomyTerm).order_by(TaxonomyTerm.name))]

    return await with_book(request, vol, lambda s, _b: load(s))


@router.get("/contacts/export", summary="Export my whole book (JSON or CSV)")
async def export_book(request: Request, format: Literal["json", "csv"] = "json",
                      vol: Volunteer = Depends(current_volunteer)) -> Response:
    def dump(session: Session, book: Book) -> str:
        rows = book_ops.export_rows(session, book)
        out = io.StringIO()
        if format == "json":
            json.dump(list(rows), out, ensure_ascii=False, indent=1)
        else:
            write_contacts_csv(({
                "name": r["name"], "emails": " ".join(r["emails"]), "phones": " ".join(r["phones"]),
                "handles": " ".join(f"{k}:{v}" for k, v in r["handles"].items()),
                "locale": r["locale"] or "", "commune": r["commune"] or "", "region": r["region"] or "",
                "interests": " ".join(r["interests"]), "tags": " ".join(r["tags"]), "notes": r["notes"] or "",
                "email_consent": r["consent"].get("email", {}).get("state", ""),
            } for r in rows), out, CSV_COLUMNS)
        return out.getvalue()

    body = await with_book(request, vol, dump)
    media = "application/json" if format == "json" else "text/csv; charset=utf-8"
    return Response(body, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="contacts.{format}"'})


CSV_COLUMNS = ("name", "emails", "phones", "handles", "locale", "commune", "region", "interests", "tags",
               "notes", "email_consent")


@router.get("/contacts/{contact_id}", summary="One of my contacts, with consent and history")
async def get_contact(contact_id: str, request: Request, vol: Volunteer = Depends(current_volunteer)) -> ContactOut:
    return await with_book(request, vol, lambda s, b: _out(s, b, _own(s, b, contact_id)))


@router.get("/contacts/{contact_id}/export", summary="Everything my book holds on one contact (JSON)")
async def export_contact(contact_id: str, request: Request, vol: Volunteer = Depends(current_volunteer)) -> dict:
    return await with_book(request, vol, lambda s, b: book_ops.describe(s, b, _own(s, b, contact_id)))


@router.patch("/contacts/{contact_id}", summary="Edit a contact")
async def edit_contact(contact_id: str, body: ContactPatch, request: Request,
                       vol: Volunteer = Depends(current_volunteer)) -> ContactOut:
    def edit(session: Session, book: Book) -> ContactOut:
        contact = _own(session, book, contact_id)
        check_taxonomy(session, body.interests or [])
        try:
            book_ops.update_contact(session, book, contact, body.model_dump(exclude_unset=True))
        except DuplicateAddress as exc:
            raise already_in_book(exc) from exc
        except domain.AddressBlocked as exc:
            raise field_error("body", "emails", str(exc)) from exc
        session.commit()
        return _out(session, book, contact)

    return await changing_book(request, vol, edit)


@router.post("/contacts/bulk-tag", summary="Add or remove tags or interests on many contacts")
async def bulk_tag(body: BulkTagIn, request: Request, vol: Volunteer = Depends(current_volunteer)) -> dict:
    def tag(session: Session, book: Book) -> int:
        owned = set(session.exec(select(Contact.id).where(
            Contact.volunteer_id == book.volunteer_id, Contact.id.in_(body.contact_ids))))
        unknown = [cid for cid in body.contact_ids if cid not in owned]
        if unknown:
            raise not_found(f"contact {unknown[0]}")
        if body.kind == "interest":
            check_taxonomy(session, body.add, field="add")
        return book_ops.bulk_tag(session, book.volunteer_id, sorted(owned), body.kind, body.add, body.remove)

    changed = await changing_book(request, vol, tag)
    return {"contacts": len(body.contact_ids), "changed": changed}


@router.delete("/contacts/{contact_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a contact")
async def delete_contact(contact_id: str, request: Request, vol: Volunteer = Depends(current_volunteer)) -> Response:
    def delete(session: Session, book: Book) -> None:
        book_ops.delete_contact(session, _own(session, book, contact_id).id)
        session.commit()

    await changing_book(request, vol, delete)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/contacts/{contact_id}/consent/email", summary="Record a contact's email consent")
async def record_consent(contact_id: str, body: ConsentIn, request: Request,
                         vol: Volunteer = Depends(current_volunteer)) -> ContactOut:
    """Confirm (with a proof: how and when they agreed) or withdraw. A
    withdrawal can only be undone by the contact, through their own link."""

    def record(session: Session, book: Book) -> ContactOut:
        contact = _own(session, book, contact_id)
        try:
            book_ops.set_consent(session, book, contact.id, body.state, ConsentSource.volunteer, body.proof)
        except ConsentRuleError as exc:
            raise field_error("body", "state", str(exc)) from exc
        session.commit()
        return _out(session, book, contact)

    return await changing_book(request, vol, record)


@router.post("/contacts/{contact_id}/invite", summary="Invite a contact to receive my messages (once)")
async def invite_contact(contact_id: str, body: InviteContactIn, request: Request,
                         vol: Volunteer = Depends(current_volunteer)) -> ContactOut:
    """Sends one invitation email saying who writes, on whose behalf, where
    the address came from, with links to accept or refuse. Only an unknown
    contact can be invited, and only once."""
    k, cfg = keys(request), settings(request)

    def prepare(session: Session, book: Book) -> EmailJob:
        contact = _own(session, book, contact_id)
        record = session.get(ConsentRecord, (contact.id, "email"))
        # This contact's own state may be named: it is the outcome of this
        # volunteer's own actions (their invitation, its answer, their own
        # email's unsubscribe link). What others did is not (below).
        if record.invited_at is not None or record.state != Consent.unknown.value:
            raise conflict(f"consent: this contact is {record.state}"
                           + (f", invited on {record.invited_at:%Y-%m-%d}" if record.invited_at else "")
                           + "; an invitation is sent once")
        data = book_ops.read_contact(book, contact)
        if not data["emails"]:
            raise conflict("emails: this contact has no email address")
        blind = k.index.email(data["emails"][0])
        message = session.get(CampaignMessage, body.message_id) if body.message_id else None
        if body.message_id and message is None:
            raise not_found("message")
        # One invitation per address, ever, campaign-wide; the refusal reads
        # the same whether the person said no, unsubscribed, bounced, or was
        # invited from another book (domain.UNREACHABLE says why).
        if not book_ops.claim_invitation(session, contact.id, blind):
            raise conflict(f"emails: {domain.UNREACHABLE}")
        # the address hash lets the person's "no" hold even if this contact is deleted meanwhile
        link = k.links.sign("consent", {"v": vol.id, "c": contact.id, "ch": "email", "b": blind},
                            ttl_seconds=60 * 86400)
        unsubscribe = k.links.sign("unsubscribe", {"v": vol.id, "c": contact.id, "b": blind})
        subject, text = domain.invitation_email(
            volunteer=vol.display_name, campaign=cfg.campaign_name,
            confirm_url=f"{cfg.public_url}/consent/{link}", message_title=message.title if message else None,
            message_body=message.email_body if message else None,
        )
        job = OpenedEmailJob(kind="invitation", job_id=domain.invitation_job_id(blind), relay_id="invitation",
                       message_id=body.message_id or "invitation", volunteer_id=vol.id,
                       sender_name=domain.header_name(vol.display_name), reply_to=vol.email,
                       recipient_name=domain.header_name(data["name"]),
                       recipient_email=data["emails"][0], recipient_hash=blind, subject=subject,
                       body_text=text, unsubscribe_url=f"{cfg.public_url}/u/{unsubscribe}")
        return seal_email(job, request.app.state.sealer[Channel.email])

    def mark_invited(session: Session, book: Book) -> ContactOut:
        book_ops.set_consent(session, book, contact_id, Consent.invited, ConsentSource.invitation)
        session.commit()
        return _out(session, book, _own(session, book, contact_id))

    job = await with_book(request, vol, prepare)
    # Sent first, marked after: a failure in between is retried, and the
    # stable job id makes JetStream drop the second copy.
    await request.app.state.bus.publish(EMAIL_JOB, job, msg_id=job.job_id)
    return await with_book(request, vol, mark_invited)
