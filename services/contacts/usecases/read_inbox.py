"""The volunteer reads their inbox (live suggestions, best first, each with
the contacts it fits) and what became of one of their relays."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from services.contacts import book as book_ops
from services.contacts import domain
from services.contacts.errors import NotFound
from services.contacts.relay.emails import relay_outcomes
from services.contacts.store import CampaignMessage, InboxItem, Relay, Volunteer
from services.contacts.usecases._unit import Contacts, unit
from services.contacts.usecases.relay import live


@dataclass(frozen=True)
class Entry:
    item: InboxItem
    message: CampaignMessage | None  # None until the message itself arrives
    audience_size: int
    relay_id: str | None


@dataclass(frozen=True)
class RelayOutcome:
    relay: Relay
    counts: dict[str, dict[str, int]]  # per channel, per status
    reasons: dict[str, str]  # why a post failed, per network
    message: CampaignMessage | None


async def inbox(ctx: Contacts, vol: Volunteer) -> list[Entry]:
    def load(session: Session) -> list[Entry]:
        views = book_ops.views(session, vol.id)
        items = session.exec(select(InboxItem).where(InboxItem.volunteer_id == vol.id)
                             .order_by(col(InboxItem.score).desc(), col(InboxItem.received_at).desc()))
        entries = []
        for item in items:
            msg = session.get(CampaignMessage, item.message_id)
            if msg is not None and not live(msg):
                continue  # withdrawn or expired: it leaves the inbox
            relay = session.exec(select(Relay).where(Relay.suggestion_id == item.suggestion_id)).first()
            entries.append(Entry(item, msg, len(domain.relay_recipients(views, msg.interests)) if msg
                                 else item.audience_size, relay.id if relay else None))
        return entries

    return await unit(ctx.engine, load)


async def relay_outcome(ctx: Contacts, vol: Volunteer, relay_id: str) -> RelayOutcome:
    def load(session: Session):
        row, counts, reasons = relay_outcomes(session, relay_id)
        msg = session.get(CampaignMessage, row.message_id) if row is not None else None
        return row, counts, reasons, msg

    row, counts, reasons, msg = await unit(ctx.engine, load)
    if row is None or row.volunteer_id != vol.id:
        raise NotFound("relay")
    return RelayOutcome(row, counts, reasons, msg)
