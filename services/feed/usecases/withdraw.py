"""A publisher withdraws a message, or the scheduler expires it. A live
one is withdrawn on NATS first (its suggestions leave the inboxes, its
pending jobs are dropped); one that never went out is just closed."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from services.feed import publishing
from services.feed.domain import LIVE, SCHEDULER, Action, Actor, State, TransitionError, next_state
from services.feed.errors import Unavailable
from services.feed.store import Message
from services.feed.usecases.moves import load, move
from services.feed.usecases.publish import nothing_published
from shared.messaging import Bus
from shared.events import utcnow


async def _withdraw(engine: Engine, bus: Bus, message_id: str, actor: Actor, reason: str) -> Message:
    action = Action.expire if reason == "expired" else Action.withdraw
    for _ in range(3):
        m = await load(engine, message_id)
        target = next_state(m.state, action)
        now = utcnow()
        if m.state in LIVE:
            await publishing.message_withdrawn(bus, m.id, reason)
        if await move(engine, m, target, actor, action, withdrawn_at=now, withdrawn_reason=reason):
            return await load(engine, message_id)
    m = await load(engine, message_id)
    raise TransitionError(State(m.state), action)


async def withdraw(engine: Engine, bus: Bus, message_id: str, actor: Actor) -> Message:
    try:
        return await _withdraw(engine, bus, message_id, actor, "withdrawn")
    except Unavailable as exc:
        raise nothing_published(exc, "try again") from exc


async def expire(engine: Engine, bus: Bus, message_id: str) -> Message:
    """The scheduler, at a message's expires_at."""
    return await _withdraw(engine, bus, message_id, SCHEDULER, "expired")
