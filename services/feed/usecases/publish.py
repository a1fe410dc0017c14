"""A message goes public: a publisher publishes an approved one (now, or
scheduled while its publish_at is ahead), writes and publishes in one step,
or the scheduler releases a scheduled one at its embargo. All three are
``publish``: published on NATS first, then recorded (publishing.py)."""

from __future__ import annotations

from prometheus_client import Counter
from sqlalchemy.engine import Engine

from services.feed import publishing
from services.feed.domain import SCHEDULER, Action, Actor, MessageDraft, State, next_state, schedule_problems
from services.feed.errors import Refused, Unavailable
from services.feed.store import Message
from services.feed.usecases.create_draft import Limits, write
from services.feed.usecases.moves import load, move
from shared.messaging import Bus
from shared.events import utcnow

MESSAGES_PUBLISHED = Counter(
    "maillage_feed_campaign_messages_published_total", "Campaign messages published by staff."
)


async def publish(engine: Engine, bus: Bus, message_id: str, actor: Actor, *,
                  action: Action = Action.publish, tolerate_done: bool = False) -> Message:
    """``publish`` (a publisher: now, or scheduled while embargoed) or
    ``release`` (the scheduler, at the embargo). ``tolerate_done``: a
    message already published or scheduled is returned as it is (retries of
    the one-step ``POST /messages``)."""
    for _ in range(3):
        m = await load(engine, message_id)
        if tolerate_done and m.state in (State.published, State.scheduled):
            return m
        now = utcnow()
        embargoed = m.publish_at is not None and m.publish_at > now
        target = next_state(m.state, action, embargoed=embargoed)
        if action is Action.publish and (problems := schedule_problems(None, m.expires_at, now)):
            raise Refused(problems)
        if m.expires_at is not None and m.expires_at <= now:  # released too late: it never goes out
            await move(engine, m, State.expired, actor, Action.expire, withdrawn_at=now, withdrawn_reason="expired")
            return await load(engine, message_id)
        if target is State.scheduled:
            if await move(engine, m, target, actor, Action.publish):
                return await load(engine, message_id)
            continue
        await publishing.message_published(bus, m)
        if await move(engine, m, State.published, actor, action, published_at=now):
            MESSAGES_PUBLISHED.inc()
            return await load(engine, message_id)
        after = await load(engine, message_id)
        if after.state in (State.withdrawn, State.expired):
            # Withdrawn while we published: the volunteers must hear it too.
            await publishing.message_withdrawn(bus, m.id, after.withdrawn_reason or "withdrawn")
        if tolerate_done or after.state == State.published:
            return after
    return await load(engine, message_id)


def nothing_published(exc: Unavailable, hint: str) -> Unavailable:
    return Unavailable(f"NATS did not take the event ({exc}): nothing was published; {hint}")


async def publish_approved(engine: Engine, bus: Bus, message_id: str, actor: Actor) -> Message:
    try:
        return await publish(engine, bus, message_id, actor)
    except Unavailable as exc:
        raise nothing_published(exc, "try again") from exc


async def write_and_publish(engine: Engine, bus: Bus, draft: MessageDraft, actor: Actor, key: str | None,
                            limits: Limits) -> Message:
    """Store the message approved, then publish it (or schedule it, with a
    ``publish_at`` ahead). With an ``Idempotency-Key`` a retry returns the
    same message; one stored but not yet published (NATS was down) is
    published on retry."""
    message = await write(engine, draft, actor, key, limits, approved=True)
    try:
        return await publish(engine, bus, message.id, actor, tolerate_done=True)
    except Unavailable as exc:
        raise nothing_published(exc, f"message {message.id} is saved; retry with the same Idempotency-Key") from exc


async def release(engine: Engine, bus: Bus, message_id: str) -> Message:
    """The scheduler, at the embargo of a scheduled message."""
    return await publish(engine, bus, message_id, SCHEDULER, action=Action.release)
