"""The one-click relay: what the volunteer's click (the inbox) and their
auto-relay choice (receive_suggestion) both do, so an automatic relay
follows exactly the rules of a click — consent, suppressions, one message
per person, the per-person cap — and shares its idempotence (one relay id
per suggestion)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from enum import Enum

from fastapi import status
from prometheus_client import Counter
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.contacts import domain, outbound
from services.contacts.relay import posts as fanout
from services.contacts.book import Book
from services.contacts.errors import ContactsError
from services.contacts.relay.emails import RelayPlan, plan_relay
from services.contacts.store import CampaignMessage, InboxItem, Relay, Volunteer
from services.contacts.usecases._unit import Contacts, in_book, unit
from shared.db import in_session, insert_or_get, mark_once
from shared.events import utcnow

TAKEOVER_SECONDS = 10.0
RELAYS = Counter("maillage_contacts_relays_total", "Relays clicked by volunteers.")


class Refusal(str, Enum):
    no_suggestion = "no_suggestion"
    not_arrived = "not_arrived"  # the suggestion came before the message itself
    not_live = "not_live"  # withdrawn or expired
    erased = "erased"  # the volunteer's book is gone
    not_queued = "not_queued"  # NATS refused the jobs: retry, nothing is sent twice


class RelayRefused(ContactsError):
    def __init__(self, reason: Refusal, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


# What a refusal means over HTTP (api/deps.py ANSWERS)
REFUSAL_STATUS = {
    Refusal.no_suggestion: status.HTTP_404_NOT_FOUND,
    Refusal.not_arrived: status.HTTP_409_CONFLICT,
    Refusal.not_live: status.HTTP_409_CONFLICT,
    Refusal.erased: status.HTTP_410_GONE,
    Refusal.not_queued: status.HTTP_503_SERVICE_UNAVAILABLE,
}


def live(msg: CampaignMessage) -> bool:
    """Neither withdrawn nor past its expiry."""
    expired = msg.expires_at is not None and msg.expires_at.replace(tzinfo=None) <= utcnow().replace(tzinfo=None)
    return msg.withdrawn_at is None and not expired


async def relay_suggestion(ctx: Contacts, vol: Volunteer, suggestion_id: str, *, note: str | None = None,
                           automatic: bool = False) -> tuple[str, bool]:
    """Relay one suggestion; returns its relay id and whether this call is
    the one that queued it (a repeated or concurrent call queues nothing
    and returns the same id once the first has finished). A click is
    counted once, however many times it comes."""
    cfg, k = ctx.settings, ctx.keys
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
                          sealer=ctx.sealer, cap=cfg.recipient_cap,
                          window=timedelta(days=cfg.recipient_cap_days), note=note)
        posts = fanout.plan_posts(session, book, session.get_one(CampaignMessage, message_id), rid, ctx.sealer)
        return message_id, plan, posts

    try:
        message_id, plan, posts = await in_book(ctx, vol, prepare)
    except RelayRefused:
        raise
    except ContactsError as exc:  # the book is gone
        raise RelayRefused(Refusal.erased, str(exc)) from exc
    if plan is None:
        await published(ctx.engine, rid)
        return rid, False
    # Job ids are stable, so a retry after a failure here re-publishes the
    # same ids and JetStream's dedupe window drops the copies.
    try:
        await outbound.relay(ctx.bus, relay_id=rid, volunteer_id=vol.id, message_id=message_id,
                             emails=plan.jobs, posts=posts)
    except Exception as exc:
        await unit(ctx.engine, lambda s: let_next_call_retry(s, rid))
        raise RelayRefused(Refusal.not_queued,
                           "the relay could not be queued; click again: nothing will be sent twice") from exc
    done = await in_session(ctx.engine, lambda s: mark_once(
        s, Relay, rid, emails_queued=len(plan.jobs), skipped=plan.skipped))
    if done and not automatic:  # a concurrent double click counts once
        RELAYS.inc()
    return rid, done


def stalled(session: Session, rid: str) -> bool:
    """A relay another call started but never finished (it crashed, or NATS
    failed it): this call takes over. Safe: job ids are stable."""
    row = session.get_one(Relay, rid)
    age = (utcnow().replace(tzinfo=None) - row.created_at.replace(tzinfo=None)).total_seconds()
    return row.published_at is None and age > TAKEOVER_SECONDS


def let_next_call_retry(session: Session, rid: str) -> None:
    row = session.get_one(Relay, rid)
    row.created_at = utcnow() - timedelta(seconds=2 * TAKEOVER_SECONDS)  # reads as stalled
    session.add(row)


async def published(engine: Engine, rid: str) -> None:
    """Wait (a little) for the call that is relaying to finish, so both
    calls answer the same."""
    for _ in range(int(TAKEOVER_SECONDS / 0.05)):
        row = await in_session(engine, lambda s: s.get_one(Relay, rid))
        if row.published_at is not None:
            return
        await asyncio.sleep(0.05)
