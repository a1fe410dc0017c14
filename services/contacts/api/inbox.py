"""The inbox of suggestions and the one-click relay."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, select

from services.contacts import book as book_ops
from services.contacts import domain, fanout
from services.contacts.api.deps import current_volunteer, not_found
from services.contacts.relay_click import Refusal, RelayRefused, live, relay_suggestion
from services.contacts.store import CampaignMessage, InboxItem, Relay, Volunteer
from services.contacts.relaying import relay_outcomes
from shared.db import in_session
from shared.events import Channel

router = APIRouter(tags=["inbox and relay"])


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
                                    description="not sent: unreachable (the campaign-wide rules, not named), "
                                    "no_address")
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
    try:
        rid, done = await relay_suggestion(request.app.state.relayer, vol, suggestion_id,
                                           note=body.note or None if body else None)
    except RelayRefused as refused:
        raise HTTPException(REFUSAL_STATUS[refused.reason], detail=refused.detail) from refused
    if done:  # a concurrent double click counts once
        request.app.state.relays_counter.inc()
    return await relay_status(rid, request, vol)


REFUSAL_STATUS = {
    Refusal.no_suggestion: status.HTTP_404_NOT_FOUND,
    Refusal.not_arrived: status.HTTP_409_CONFLICT,
    Refusal.not_live: status.HTTP_409_CONFLICT,
    Refusal.erased: status.HTTP_410_GONE,
    Refusal.not_queued: status.HTTP_503_SERVICE_UNAVAILABLE,
}


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
