"""The inbox of suggestions and the one-click relay."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, Field
from sqlmodel import Session, select

from services.contacts import book as book_ops
from services.contacts import domain
from services.contacts.api.deps import current_volunteer, keys, not_found, settings, with_book
from services.contacts.book import Book
from services.contacts.store import CampaignMessage, InboxItem, Relay, Volunteer
from services.contacts.relaying import plan_relay, relay_outcomes
from shared.catalogue import EMAIL_JOB, RELAY_REQUESTED
from shared.db import in_session, insert_or_get, mark_once
from shared.events import Channel, RelayRequested, utcnow

router = APIRouter(tags=["inbox and relay"])


def live(msg: CampaignMessage) -> bool:
    """Neither withdrawn nor past its expiry."""
    expired = msg.expires_at is not None and msg.expires_at.replace(tzinfo=None) <= utcnow().replace(tzinfo=None)
    return msg.withdrawn_at is None and not expired


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
    skipped: dict[str, int] = Field(default_factory=dict,
                                    description="not sent, and why: suppressed, already_received, over_cap")


class RelayOut(BaseModel):
    relay_id: str
    message_id: str
    channels: dict[Channel, ChannelOutcome]


@router.get("/inbox", summary="Messages suggested for my network")
async def inbox(request: Request, vol: Volunteer = Depends(current_volunteer)) -> list[InboxEntry]:
    def load(session: Session) -> list[InboxEntry]:
        views = book_ops.views(session, vol.id)
        items = session.exec(select(InboxItem).where(InboxItem.volunteer_id == vol.id)
                             .order_by(InboxItem.score.desc(), InboxItem.received_at.desc()))
        entries = []
        for item in items:
            msg = session.get(CampaignMessage, item.message_id)
            if msg is not None and not live(msg):
                continue  # withdrawn or expired: it leaves the inbox
            relay = session.exec(select(Relay).where(Relay.suggestion_id == item.suggestion_id)).first()
            entries.append(InboxEntry(
                suggestion_id=item.suggestion_id, message_id=item.message_id,
                title=msg.title if msg else None, email_subject=msg.email_subject if msg else None,
                matched_interests=item.matched_interests,
                audience_size=len(domain.relay_recipients(views, msg.interests)) if msg else item.audience_size,
                relay_id=relay.id if relay else None, received_at=item.received_at,
            ))
        return entries

    return await in_session(request.app.state.engine, load)


@router.post("/inbox/{suggestion_id}/relay", summary="Relay this message to all my networks, in one click")
async def relay(suggestion_id: str, request: Request, vol: Volunteer = Depends(current_volunteer)) -> RelayOut:
    """Queues one personal email per confirmed contact the message fits,
    except people who opted out, who already got this message from another
    volunteer, or who reached the campaign's per-person cap. The same click
    twice is the same relay: nothing is sent twice."""
    bus, cfg, k = request.app.state.bus, settings(request), keys(request)
    rid = domain.relay_id(suggestion_id)

    def prepare(session: Session, book: Book):
        item = session.get(InboxItem, suggestion_id)
        if item is None or item.volunteer_id != vol.id:
            raise not_found("suggestion")
        msg = session.get(CampaignMessage, item.message_id)
        if msg is None:
            raise HTTPException(status.HTTP_409_CONFLICT,
                                detail="the message has not reached this service yet; retry shortly")
        if not live(msg):
            raise HTTPException(status.HTTP_409_CONFLICT, detail="the campaign withdrew this message, or it expired")
        row = insert_or_get(session, Relay(id=rid, suggestion_id=suggestion_id, volunteer_id=vol.id,
                                           message_id=msg.message_id, emails_queued=0), Relay, rid)
        if row.published_at is not None:
            return row, None
        plan = plan_relay(session, book, vol, msg, rid, public_url=cfg.public_url, links=k.links,
                          cap=cfg.recipient_cap, window=timedelta(days=cfg.recipient_cap_days))
        return row, plan

    row, plan = await with_book(request, vol, prepare)
    if plan is not None:
        # Job ids are stable, so a retry after a failure here re-publishes the
        # same ids and JetStream's dedupe window drops the copies.
        await bus.publish_many(EMAIL_JOB, [(j, (), j.job_id) for j in plan.jobs])
        await bus.publish(RELAY_REQUESTED, RelayRequested(
            relay_id=rid, volunteer_id=vol.id, message_id=row.message_id,
            jobs_queued={Channel.email: len(plan.jobs)}), msg_id=rid)
        done = await in_session(request.app.state.engine, lambda s: mark_once(
            s, Relay, rid, emails_queued=len(plan.jobs), skipped=plan.skipped))
        if done:  # a concurrent double click counts once
            request.app.state.relays_counter.inc()
    return await relay_status(rid, request, vol)


@router.get("/relays/{relay_id}", summary="What became of one of my relays")
async def relay_status(relay_id: str, request: Request, vol: Volunteer = Depends(current_volunteer)) -> RelayOut:
    row, counts = await in_session(request.app.state.engine, lambda s: relay_outcomes(s, relay_id))
    if row is None or row.volunteer_id != vol.id:
        raise not_found("relay")
    delivered, failed = counts.get("delivered", 0), counts.get("failed", 0)
    pending = row.emails_queued - delivered - failed
    return RelayOut(relay_id=row.id, message_id=row.message_id, channels={
        Channel.email: ChannelOutcome(
            status="sending" if pending > 0 else "done", queued=row.emails_queued,
            delivered=delivered, failed=failed, skipped=row.skipped)})
