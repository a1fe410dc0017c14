"""The inbox of suggestions and the one-click relay."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from services.contacts.relay import posts as fanout
from services.contacts.api.deps import ContactsDep, CurrentVolunteer
from services.contacts.usecases import read_inbox
from services.contacts.usecases.relay import relay_suggestion
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


class RelayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    note: str | None = Field(
        default=None, max_length=2000,
        description="a few words of your own, placed above the message in every email (plain text)")


@router.get("/inbox", summary="Messages suggested for my network")
async def inbox(ctx: ContactsDep, vol: CurrentVolunteer) -> list[InboxEntry]:
    return [entry_out(e) for e in await read_inbox.inbox(ctx, vol)]


def entry_out(e: read_inbox.Entry) -> InboxEntry:
    return InboxEntry(
        suggestion_id=e.item.suggestion_id, message_id=e.item.message_id,
        title=e.message.title if e.message else None, email_subject=e.message.email_subject if e.message else None,
        matched_interests=e.item.matched_interests, audience_size=e.audience_size, relay_id=e.relay_id,
        received_at=e.item.received_at,
    )


@router.post("/inbox/{suggestion_id}/relay", summary="Relay this message to all my networks, in one click",
             response_model_exclude_none=True)
async def relay(suggestion_id: str, ctx: ContactsDep, vol: CurrentVolunteer,
                body: RelayRequest | None = None) -> RelayOut:
    """Queues one personal email per confirmed contact the message fits,
    except people who opted out, who already got this message from another
    volunteer, or who reached the campaign's per-person cap; one post on each
    social account the volunteer connected; and prefilled share links for
    the networks without an open API. An optional ``note`` greets every
    contact in the volunteer's own words. The same click twice is the same
    relay: nothing is sent twice."""
    rid, _ = await relay_suggestion(ctx, vol, suggestion_id, note=body.note or None if body else None)
    return await relay_status(rid, ctx, vol)


@router.get("/relays/{relay_id}", summary="What became of one of my relays", response_model_exclude_none=True)
async def relay_status(relay_id: str, ctx: ContactsDep, vol: CurrentVolunteer) -> RelayOut:
    return relay_out(await read_inbox.relay_outcome(ctx, vol, relay_id))


def relay_out(outcome: read_inbox.RelayOutcome) -> RelayOut:
    row, counts = outcome.relay, dict(outcome.counts)
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
                                           reason=outcome.reasons.get(channel))
    if outcome.message is not None:
        for name, url in fanout.links_for(outcome.message, posted_on=set(counts)).items():
            channels[name] = ChannelOutcome(status="link", url=url)
    return RelayOut(relay_id=row.id, message_id=row.message_id, channels=channels)


SOCIAL_STATUS = {"delivered": "posted"}  # as the volunteer reads it: a post is posted, not delivered
