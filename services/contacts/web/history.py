"""History: what the volunteer relayed, when, and what became of it —
delivered, bounced, opted out — as counts of their own relays."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from fastapi import APIRouter, Depends, Request
from sqlmodel import Session, col, func, select

from services.contacts.api.deps import ContactsDep
from services.contacts.store import CampaignMessage, Relay, SentItem, Volunteer
from services.contacts.usecases._unit import unit
from services.contacts.web.auth import web_volunteer
from shared.outcomes import stored_kind, volunteer_line
from shared.web.pages import render

router = APIRouter(prefix="/app/history", include_in_schema=False)
SHOWN = 100


@dataclass
class RelayLine:
    relay_id: str
    title: str
    at: datetime
    automatic: bool = False  # relayed by the volunteer's auto-relay choice, without a click
    counts: Counter = field(default_factory=Counter)  # delivered, bounced, failed, pending, unreachable, posted


def load(session: Session, volunteer_id: str) -> list[RelayLine]:
    relays = session.exec(select(Relay).where(Relay.volunteer_id == volunteer_id)
                          .order_by(col(Relay.created_at).desc()).limit(SHOWN)).all()
    lines = {}
    for r in relays:
        msg = session.get(CampaignMessage, r.message_id)
        line = RelayLine(r.id, msg.title if msg else r.message_id, r.created_at, r.automatic)
        # one neutral count: which campaign-wide rule stopped a send is not the volunteer's to know
        line.counts["unreachable"] = r.skipped.get("unreachable", 0)
        lines[r.id] = line
    if lines:
        columns = (SentItem.relay_id, SentItem.channel, SentItem.status, SentItem.reason, SentItem.outcome)
        for relay_id, channel, status, reason, kind, n in session.exec(
            # sqlmodel's select is typed for at most four columns
            select(*columns, func.count())  # type: ignore[call-overload]
            .where(col(SentItem.relay_id).in_(list(lines))).group_by(*columns)
        ).all():
            lines[relay_id].counts[volunteer_line(stored_kind(kind, status, reason), channel).value] += n
    return list(lines.values())


@router.get("")
async def history_page(request: Request, ctx: ContactsDep, vol: Volunteer = Depends(web_volunteer)):
    lines = await unit(ctx.engine, lambda s: load(s, vol.id))
    return render(request, "history.html", lines=lines,
                  columns=("delivered", "bounced", "unreachable", "failed", "pending", "posted"))
