"""Contacts' HTTP routes. Every volunteer route is scoped to the caller:
another volunteer's contact or suggestion is a 404, as if it did not exist."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from services.contacts import domain
from services.contacts.domain import Consent, ContactIn
from services.contacts.store import (
    CampaignMessage,
    Contact,
    InboxItem,
    Relay,
    Volunteer,
    contacts_of,
    outcome_counts,
)
from shared.auth import Authenticator, Principal, hash_token, new_token, require, same_token
from shared.catalogue import EMAIL_JOB, PROFILE_UPDATED, RELAY_REQUESTED
from shared.db import in_session, insert_or_get, mark_once
from shared.events import Channel, EmailJob, InterestName, InterestProfile, RelayRequested

# -- schemas -------------------------------------------------------------------------


class VolunteerIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    display_name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    token: str | None = Field(
        default=None, min_length=24, max_length=200,
        description="set a known token (demo seeding); omitted, a new one is issued",
    )


class VolunteerCreated(BaseModel):
    volunteer_id: str
    token: str


class Me(BaseModel):
    volunteer_id: str
    display_name: str
    shared_interests: list[str] | None


class SharingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shared_interests: list[InterestName] | None = Field(
        description="interests whose counts you share with the campaign; null shares all"
    )


class ContactOut(BaseModel):
    id: str
    name: str
    email: str
    interests: list[str]
    consent: Consent
    created_at: datetime


class InboxEntry(BaseModel):
    suggestion_id: str
    message_id: str
    title: str | None
    email_subject: str | None
    matched_interests: list[str]
    audience_size: int = Field(description="your confirmed contacts this message fits")
    relay_id: str | None
    received_at: datetime


class ChannelOutcome(BaseModel):
    status: str
    queued: int = 0
    delivered: int = 0
    failed: int = 0


class RelayOut(BaseModel):
    relay_id: str
    message_id: str
    channels: dict[Channel, ChannelOutcome]


# -- dependencies --------------------------------------------------------------------


PROVISIONER, VOLUNTEER = "provisioner", "volunteer"


def contacts_authenticator(engine, provisioning_token_hash: str) -> Authenticator:
    async def authenticate(token: str) -> Principal | None:
        if same_token(token, provisioning_token_hash):
            return Principal(PROVISIONER)
        digest = hash_token(token)
        vol = await in_session(
            engine, lambda s: s.exec(select(Volunteer).where(Volunteer.token_hash == digest)).first()
        )
        return Principal(VOLUNTEER, vol) if vol else None

    return authenticate


def current_volunteer(principal: Principal = Depends(require(VOLUNTEER))) -> Volunteer:
    return principal.account


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no such {what}")


admin = APIRouter(prefix="/admin", tags=["provisioning"], dependencies=[Depends(require(PROVISIONER))])
router = APIRouter(tags=["volunteer"])


async def current_profile(request: Request, volunteer_id: str) -> InterestProfile:
    """The volunteer's opt-in profile: counts of confirmed contacts per shared interest."""

    def compute(session: Session) -> InterestProfile:
        vol = session.get(Volunteer, volunteer_id)
        shared = set(vol.shared_interests) if vol.shared_interests is not None else None
        views = [c.view() for c in contacts_of(session, volunteer_id)]
        return InterestProfile(
            volunteer_id=volunteer_id, audience=domain.interest_profile(views, shared)
        )

    return await in_session(request.app.state.engine, compute)


async def publish_profile(request: Request, volunteer_id: str) -> InterestProfile:
    profile = await current_profile(request, volunteer_id)
    await request.app.state.bus.publish(
        PROFILE_UPDATED, profile, volunteer_id, msg_id=profile.event_id
    )
    return profile


# -- provisioning --------------------------------------------------------------------


@admin.post("/volunteers", status_code=status.HTTP_201_CREATED, summary="Create a volunteer account")
async def create_volunteer(body: VolunteerIn, request: Request, response: Response) -> VolunteerCreated:
    """Creates the account, or for an existing email re-issues its token."""
    token = body.token or new_token("vol")

    def upsert(session: Session) -> tuple[Volunteer, bool]:
        vol = session.exec(select(Volunteer).where(Volunteer.email == body.email.lower())).first()
        created = vol is None
        if created:
            vol = Volunteer(display_name=body.display_name, email=body.email.lower(), token_hash="")
        vol.display_name = body.display_name
        vol.token_hash = hash_token(token)
        session.add(vol)
        session.commit()
        return vol, created

    try:
        vol, created = await in_session(request.app.state.engine, upsert)
    except IntegrityError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail="token already in use") from exc
    if not created:
        response.status_code = status.HTTP_200_OK
    return VolunteerCreated(volunteer_id=vol.id, token=token)


# -- the volunteer's own space -------------------------------------------------------------


@router.get("/me", summary="Who I am")
async def me(vol: Volunteer = Depends(current_volunteer)) -> Me:
    return Me(volunteer_id=vol.id, display_name=vol.display_name, shared_interests=vol.shared_interests)


@router.get("/me/profile", summary="What the campaign sees of my network (counts only)")
async def my_profile(request: Request, vol: Volunteer = Depends(current_volunteer)) -> InterestProfile:
    return await current_profile(request, vol.id)


@router.put("/me/profile", summary="Choose which interests I share, and publish my profile")
async def share_profile(
    body: SharingIn, request: Request, vol: Volunteer = Depends(current_volunteer)
) -> InterestProfile:
    def save(session: Session) -> None:
        row = session.get(Volunteer, vol.id)
        row.shared_interests = sorted(set(body.shared_interests)) if body.shared_interests is not None else None
        session.add(row)
        session.commit()

    await in_session(request.app.state.engine, save)
    return await publish_profile(request, vol.id)


def contact_out(c: Contact) -> ContactOut:
    return ContactOut(
        id=c.id, name=c.name, email=c.email, interests=c.interests,
        consent=c.consent_email, created_at=c.created_at,
    )


@router.post("/contacts", status_code=status.HTTP_201_CREATED, summary="Add a contact to my book")
async def add_contact(
    body: ContactIn, request: Request, vol: Volunteer = Depends(current_volunteer)
) -> ContactOut:
    def insert(session: Session) -> Contact:
        contact = Contact(
            volunteer_id=vol.id,
            name=body.name,
            email=str(body.email),
            email_norm=domain.normalize_email(str(body.email)),
            interests=sorted(set(body.interests)),
            consent_email=body.consent,
        )
        session.add(contact)
        session.commit()
        return contact

    try:
        contact = await in_session(request.app.state.engine, insert)
    except IntegrityError as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail="email: this address is already in your book"
        ) from exc
    await publish_profile(request, vol.id)
    return contact_out(contact)


@router.get("/contacts", summary="My contacts")
async def list_contacts(request: Request, vol: Volunteer = Depends(current_volunteer)) -> list[ContactOut]:
    rows = await in_session(request.app.state.engine, lambda s: contacts_of(s, vol.id))
    return [contact_out(c) for c in rows]


async def own_contact(request: Request, contact_id: str, vol: Volunteer) -> Contact:
    contact = await in_session(request.app.state.engine, lambda s: s.get(Contact, contact_id))
    if contact is None or contact.volunteer_id != vol.id:
        raise not_found("contact")
    return contact


@router.get("/contacts/{contact_id}", summary="One of my contacts")
async def get_contact(
    contact_id: str, request: Request, vol: Volunteer = Depends(current_volunteer)
) -> ContactOut:
    return contact_out(await own_contact(request, contact_id, vol))


@router.delete("/contacts/{contact_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a contact")
async def delete_contact(
    contact_id: str, request: Request, vol: Volunteer = Depends(current_volunteer)
) -> Response:
    contact = await own_contact(request, contact_id, vol)

    def delete(session: Session) -> None:
        session.delete(session.get(Contact, contact.id))
        session.commit()

    await in_session(request.app.state.engine, delete)
    await publish_profile(request, vol.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/inbox", summary="Messages suggested for my network")
async def inbox(request: Request, vol: Volunteer = Depends(current_volunteer)) -> list[InboxEntry]:
    def load(session: Session) -> list[InboxEntry]:
        views = [c.view() for c in contacts_of(session, vol.id)]
        items = session.exec(
            select(InboxItem).where(InboxItem.volunteer_id == vol.id).order_by(InboxItem.received_at.desc())
        )
        entries = []
        for item in items:
            msg = session.get(CampaignMessage, item.message_id)
            relay = session.exec(select(Relay).where(Relay.suggestion_id == item.suggestion_id)).first()
            entries.append(
                InboxEntry(
                    suggestion_id=item.suggestion_id,
                    message_id=item.message_id,
                    title=msg.title if msg else None,
                    email_subject=msg.email_subject if msg else None,
                    matched_interests=item.matched_interests,
                    audience_size=len(domain.relay_recipients(views, msg.interests))
                    if msg else item.audience_size,
                    relay_id=relay.id if relay else None,
                    received_at=item.received_at,
                )
            )
        return entries

    return await in_session(request.app.state.engine, load)


@router.post("/inbox/{suggestion_id}/relay", summary="Relay this message to all my networks, in one click")
async def relay(
    suggestion_id: str, request: Request, vol: Volunteer = Depends(current_volunteer)
) -> RelayOut:
    """Queues one personal email per confirmed contact the message fits. The
    same click twice is the same relay: nothing is sent twice."""
    engine, bus = request.app.state.engine, request.app.state.bus
    rid = domain.relay_id(suggestion_id)

    def prepare(session: Session) -> tuple[Relay, list[EmailJob]]:
        item = session.get(InboxItem, suggestion_id)
        if item is None or item.volunteer_id != vol.id:
            raise not_found("suggestion")
        msg = session.get(CampaignMessage, item.message_id)
        if msg is None:
            raise HTTPException(status.HTTP_409_CONFLICT, detail="the message has not reached this service yet; retry shortly")
        by_id = {c.id: c for c in contacts_of(session, vol.id)}
        recipients = domain.relay_recipients([c.view() for c in by_id.values()], msg.interests)
        jobs = [
            EmailJob(
                job_id=domain.job_id(rid, r.contact_id, Channel.email),
                relay_id=rid,
                message_id=msg.message_id,
                volunteer_id=vol.id,
                sender_name=vol.display_name,
                reply_to=vol.email,
                recipient_name=by_id[r.contact_id].name,
                recipient_email=by_id[r.contact_id].email,
                subject=msg.email_subject,
                body_text=msg.email_body,
            )
            for r in recipients
        ]
        relay_row = Relay(
            id=rid, suggestion_id=suggestion_id, volunteer_id=vol.id,
            message_id=msg.message_id, emails_queued=len(jobs),
        )
        return insert_or_get(session, relay_row, Relay, rid), jobs

    relay_row, jobs = await in_session(engine, prepare)
    if relay_row.published_at is None:
        # Job ids are stable, so a retry after a failure here re-publishes
        # the same ids and JetStream's dedupe window drops the copies.
        await bus.publish_many(EMAIL_JOB, [(j, (), j.job_id) for j in jobs])
        await bus.publish(
            RELAY_REQUESTED,
            RelayRequested(
                relay_id=rid, volunteer_id=vol.id, message_id=relay_row.message_id,
                jobs_queued={Channel.email: len(jobs)},
            ),
            msg_id=rid,
        )

        def mark(session: Session) -> bool:
            # the book may have changed since a failed first try: count what was sent
            return mark_once(session, Relay, rid, emails_queued=len(jobs))

        if await in_session(engine, mark):  # a concurrent double click counts once
            request.app.state.relays_counter.inc()
    return await relay_status(rid, request, vol)


@router.get("/relays/{relay_id}", summary="What became of one of my relays")
async def relay_status(
    relay_id: str, request: Request, vol: Volunteer = Depends(current_volunteer)
) -> RelayOut:
    def load(session: Session) -> tuple[Relay | None, dict[str, int]]:
        return session.get(Relay, relay_id), outcome_counts(session, relay_id)

    row, counts = await in_session(request.app.state.engine, load)
    if row is None or row.volunteer_id != vol.id:
        raise not_found("relay")
    delivered, failed = counts.get("delivered", 0), counts.get("failed", 0)
    pending = row.emails_queued - delivered - failed
    return RelayOut(
        relay_id=row.id,
        message_id=row.message_id,
        channels={
            Channel.email: ChannelOutcome(
                status="sending" if pending > 0 else "done",
                queued=row.emails_queued, delivered=delivered, failed=failed,
            )
        },
    )
