"""The one-click relay as a service function: what the volunteer's click
(the inbox endpoint) and their auto-relay choice (the suggestion handler)
both do, so an automatic relay follows exactly the rules of a click —
consent, suppressions, one message per person, the per-person cap — and
shares its idempotence (one relay id per suggestion)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.contacts import domain, fanout
from services.contacts.api.deps import Keys
from services.contacts.book import Book, BookErased, open_book
from services.contacts.relaying import RelayPlan, plan_relay
from services.contacts.settings import ContactsSettings
from services.contacts.store import CampaignMessage, InboxItem, Relay, Volunteer
from shared.messaging import Bus
from shared.catalogue import EMAIL_JOB, RELAY_REQUESTED, SOCIAL_JOBS
from shared.db import in_session, insert_or_get, mark_once
from shared.events import Channel, RelayRequested, utcnow
from shared.sealed import TransitKeys

TAKEOVER_SECONDS = 10.0


@dataclass(frozen=True)
class Relayer:
    """What a relay needs, with or without an HTTP request: the handler
    has no request, so the app builds this once and both paths share it."""

    engine: Engine
    bus: Bus
    settings: ContactsSettings
    keys: Keys
    sealer: TransitKeys


class Refusal(str, Enum):
    no_suggestion = "no_suggestion"
    not_arrived = "not_arrived"  # the suggestion came before the message itself
    not_live = "not_live"  # withdrawn or expired
    erased = "erased"  # the volunteer's book is gone
    not_queued = "not_queued"  # NATS refused the jobs: retry, nothing is sent twice


class RelayRefused(Exception):
    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def live(msg: CampaignMessage) -> bool:
    """Neither withdrawn nor past its expiry."""
    expired = msg.expires_at is not None and msg.expires_at.replace(tzinfo=None) <= utcnow().replace(tzinfo=None)
    return msg.withdrawn_at is None and not expired


async def relay_suggestion(relayer: Relayer, vol: Volunteer, suggestion_id: str, *, note: str | None = None,
                           automatic: bool = False) -> tuple[str, bool]:
    """Relay one suggestion; returns its relay id and whether this call is
    the one that queued it (a repeated or concurrent call queues nothing
    and returns the same id once the first has finished)."""
    cfg, k = relayer.settings, relayer.keys
    rid = domain.relay_id(suggestion_id)

    def prepare(session: Session, book: Book) -> tuple[str, RelayPlan | None, list]:
        item = session.get(InboxItem, suggestion_id)
        if item is None or item.volunteer_id != vol.id:
            raise RelayRefused(Refusal.no_suggestion, "no such suggestion")
        msg = session.get(CampaignMessage, item.message_id)
        if msg is None:
            raise RelayRefused(Refusal.not_arrived, "the message has not reached this service yet; retry shortly")
        if not live(msg):
            raise RelayRefused(Refusal.not_live, "the campaign withdrew this message, or it expired")
        message_id = msg.message_id  # plain values: a concurrent click may roll the session back
        row = Relay(id=rid, suggestion_id=suggestion_id, volunteer_id=vol.id, message_id=message_id,
                    emails_queued=0, automatic=automatic)
        if insert_or_get(session, row, Relay, rid) is not row and not stalled(session, rid):
            return message_id, None, []  # another call is relaying it: wait for it below
        plan = plan_relay(session, book, vol, msg, rid, public_url=cfg.public_url, links=k.links,
                          sealer=relayer.sealer, cap=cfg.recipient_cap,
                          window=timedelta(days=cfg.recipient_cap_days), note=note)
        posts = fanout.plan_posts(session, book, session.get(CampaignMessage, message_id), rid, relayer.sealer)
        return message_id, plan, posts

    def with_book(session: Session):
        try:
            book = open_book(session, k.master, k.index, vol)
        except BookErased as exc:
            raise RelayRefused(Refusal.erased, "this book was erased") from exc
        return prepare(session, book)

    message_id, plan, posts = await in_session(relayer.engine, with_book)
    if plan is None:
        await published(relayer.engine, rid)
        return rid, False
    # Job ids are stable, so a retry after a failure here re-publishes the
    # same ids and JetStream's dedupe window drops the copies.
    bus = relayer.bus
    try:
        await bus.publish_many(EMAIL_JOB, [(j, (), j.job_id) for j in plan.jobs])
        for channel, job in posts:
            await bus.publish(SOCIAL_JOBS[channel], job, msg_id=job.job_id)
        await bus.publish(RELAY_REQUESTED, RelayRequested(
            relay_id=rid, volunteer_id=vol.id, message_id=message_id,
            jobs_queued={Channel.email: len(plan.jobs), **{channel: 1 for channel, _ in posts}}), msg_id=rid)
    except Exception as exc:
        await in_session(relayer.engine, lambda s: let_next_call_retry(s, rid))
        raise RelayRefused(Refusal.not_queued,
                           "the relay could not be queued; click again: nothing will be sent twice") from exc
    done = await in_session(relayer.engine, lambda s: mark_once(
        s, Relay, rid, emails_queued=len(plan.jobs), skipped=plan.skipped))
    return rid, done  # a concurrent double call counts once


def stalled(session: Session, rid: str) -> bool:
    """A relay another call started but never finished (it crashed, or NATS
    failed it): this call takes over. Safe: job ids are stable."""
    row = session.get(Relay, rid)
    age = (utcnow().replace(tzinfo=None) - row.created_at.replace(tzinfo=None)).total_seconds()
    return row.published_at is None and age > TAKEOVER_SECONDS


def let_next_call_retry(session: Session, rid: str) -> None:
    row = session.get(Relay, rid)
    row.created_at = utcnow() - timedelta(seconds=2 * TAKEOVER_SECONDS)  # reads as stalled
    session.add(row)
    session.commit()


async def published(engine: Engine, rid: str) -> None:
    """Wait (a little) for the call that is relaying to finish, so both
    calls answer the same."""
    for _ in range(int(TAKEOVER_SECONDS / 0.05)):
        row = await in_session(engine, lambda s: s.get(Relay, rid))
        if row.published_at is not None:
            return
        await asyncio.sleep(0.05)
