"""The inbox of suggestions and the one-click relay."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, select

from services.contacts import book as book_ops
from services.contacts import domain, fanout
from services.contacts.api.deps import current_volunteer, keys, not_found, settings, with_book
from services.contacts.book import Book
from services.contacts.store import CampaignMessage, InboxItem, Relay, Volunteer
from services.contacts.relaying import RelayPlan, plan_relay, relay_outcomes
from shared.catalogue import EMAIL_JOB, RELAY_REQUESTED, SOCIAL_JOBS
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
    status: str = Field(description="email: sending, done · a social post: queued, posted, failed · "
                        "a network without an open API: link (open url)")
    queued: int = 0
    delivered: int = 0
    failed: int = 0
    skipped: dict[str, int] = Field(default_factory=dict,
                                    description="not sent, and why: suppressed, already_received, over_cap")
    reason: str | None = Field(default=None, description="why a post failed: token_revoked (reconnect), http 422 …")
    url: str | None = Field(default=None, description="a prefilled share link for the client to open")


class RelayOut(BaseModel):
    relay_id: str
    message_id: str
    channels: dict[str, ChannelOutcome] = Field(description="email, each connected social account, share links")


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


class RelayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    note: str | None = Field(
        default=None, max_length=2000,
        description="a few words of your own, placed above the message in every email (plain text)")


@router.post("/inbox/{suggestion_id}/relay", summary="Relay this message to all my networks, in one click",
             response_model_exclude_none=True)
async def relay(suggestion_id: str, request: Request, body: RelayRequest | None = None,
                vol: Volunteer = Depends(current_volunteer)) -> RelayOut:
    """Queues one personal email per confirmed contact the message fits,
    except people who opted out, who already got this message from another
    volunteer, or who reached the campaign's per-person cap; one post on each
    social account the volunteer connected; and prefilled share links for
    the networks without an open API. An optional ``note`` greets every
    contact in the volunteer's own words. The same click twice is the same
    relay: nothing is sent twice."""
    bus, cfg, k = request.app.state.bus, settings(request), keys(request)
    rid = domain.relay_id(suggestion_id)

    def prepare(session: Session, book: Book) -> tuple[str, RelayPlan | None]:
        item = session.get(InboxItem, suggestion_id)
        if item is None or item.volunteer_id != vol.id:
            raise not_found("suggestion")
        msg = session.get(CampaignMessage, item.message_id)
        if msg is None:
            raise HTTPException(status.HTTP_409_CONFLICT,
                                detail="the message has not reached this service yet; retry shortly")
        if not live(msg):
            raise HTTPException(status.HTTP_409_CONFLICT, detail="the campaign withdrew this message, or it expired")
        message_id = msg.message_id  # plain values: a concurrent click may roll the session back
        row = Relay(id=rid, suggestion_id=suggestion_id, volunteer_id=vol.id, message_id=message_id,
                    emails_queued=0)
        if insert_or_get(session, row, Relay, rid) is not row and not stalled(session, rid):
            return message_id, None  # another click is relaying it: wait for it below
        return message_id, plan_relay(session, book, vol, msg, rid, public_url=cfg.public_url, links=k.links,
                                      sealer=request.app.state.sealer, cap=cfg.recipient_cap,
                                      window=timedelta(days=cfg.recipient_cap_days),
                                      note=body.note or None if body else None)

    def prepare_all(session: Session, book: Book) -> tuple[str, RelayPlan | None, list]:
        message_id, plan = prepare(session, book)
        if plan is None:
            return message_id, None, []
        posts = fanout.plan_posts(session, book, session.get(CampaignMessage, message_id), rid,
                                  request.app.state.sealer)
        return message_id, plan, posts

    message_id, plan, posts = await with_book(request, vol, prepare_all)
    if plan is not None:
        # Job ids are stable, so a retry after a failure here re-publishes the
        # same ids and JetStream's dedupe window drops the copies.
        try:
            await bus.publish_many(EMAIL_JOB, [(j, (), j.job_id) for j in plan.jobs])
            for channel, job in posts:
                await bus.publish(SOCIAL_JOBS[channel], job, msg_id=job.job_id)
            await bus.publish(RELAY_REQUESTED, RelayRequested(
                relay_id=rid, volunteer_id=vol.id, message_id=message_id,
                jobs_queued={Channel.email: len(plan.jobs), **{channel: 1 for channel, _ in posts}}), msg_id=rid)
        except Exception as exc:
            await in_session(request.app.state.engine, lambda s: let_next_click_retry(s, rid))
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                                detail="the relay could not be queued; click again: nothing will be sent twice") from exc
        done = await in_session(request.app.state.engine, lambda s: mark_once(
            s, Relay, rid, emails_queued=len(plan.jobs), skipped=plan.skipped))
        if done:  # a concurrent double click counts once
            request.app.state.relays_counter.inc()
    else:
        await published(request, rid)
    return await relay_status(rid, request, vol)


TAKEOVER_SECONDS = 10.0


def stalled(session: Session, rid: str) -> bool:
    """A relay another click started but never finished (it crashed, or NATS
    failed it): this click takes over. Safe: job ids are stable."""
    row = session.get(Relay, rid)
    age = (utcnow().replace(tzinfo=None) - row.created_at.replace(tzinfo=None)).total_seconds()
    return row.published_at is None and age > TAKEOVER_SECONDS


def let_next_click_retry(session: Session, rid: str) -> None:
    row = session.get(Relay, rid)
    row.created_at = utcnow() - timedelta(seconds=2 * TAKEOVER_SECONDS)  # reads as stalled
    session.add(row)
    session.commit()


async def published(request: Request, rid: str) -> None:
    """Wait (a little) for the click that is relaying to finish, so both
    clicks answer the same."""
    for _ in range(int(TAKEOVER_SECONDS / 0.05)):
        row = await in_session(request.app.state.engine, lambda s: s.get(Relay, rid))
        if row.published_at is not None:
            return
        await asyncio.sleep(0.05)


@router.get("/relays/{relay_id}", summary="What became of one of my relays", response_model_exclude_none=True)
async def relay_status(relay_id: str, request: Request, vol: Volunteer = Depends(current_volunteer)) -> RelayOut:
    def load(session: Session):
        row, counts, reasons = relay_outcomes(session, relay_id)
        msg = session.get(CampaignMessage, row.message_id) if row is not None else None
        return row, counts, reasons, msg

    row, counts, reasons, msg = await in_session(request.app.state.engine, load)
    if row is None or row.volunteer_id != vol.id:
        raise not_found("relay")
    email = counts.pop(Channel.email.value, {})
    delivered, failed = email.get("delivered", 0), email.get("failed", 0)
    pending = row.emails_queued - delivered - failed
    channels = {Channel.email.value: ChannelOutcome(
        status="sending" if pending > 0 else "done", queued=row.emails_queued,
        delivered=delivered, failed=failed, skipped=row.skipped)}
    for channel, states in counts.items():  # one post per connected account
        state = next(iter(states))
        channels[channel] = ChannelOutcome(status=SOCIAL_STATUS.get(state, state), queued=1,
                                           delivered=states.get("delivered", 0), failed=states.get("failed", 0),
                                           reason=reasons.get(channel))
    if msg is not None:
        for name, url in fanout.links_for(msg, posted_on=set(counts)).items():
            channels[name] = ChannelOutcome(status="link", url=url)
    return RelayOut(relay_id=row.id, message_id=row.message_id, channels=channels)


SOCIAL_STATUS = {"delivered": "posted"}  # as the volunteer reads it: a post is posted, not delivered
