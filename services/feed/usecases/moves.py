"""A message's state changes, shared by the lifecycle use cases: each is a
conditional update with its audit row in one transaction, so of two
concurrent requests (or two replicas' schedulers) one moves the message
and the other sees it moved."""

from __future__ import annotations

import structlog
from prometheus_client import Counter
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.feed.domain import Action, Actor, State, next_state
from services.feed.errors import NotFound, TransitionError
from services.feed.store import Message, transition
from services.feed.usecases.audit import audit_row
from shared.db import in_session

log = structlog.get_logger(__name__)

TRANSITIONS = Counter("maillage_feed_message_transitions_total", "Message state changes.", ["to"])


async def load(engine: Engine, message_id: str) -> Message:
    m = await in_session(engine, lambda s: s.get(Message, message_id))
    if m is None:
        raise NotFound("message")
    return m


async def movable(engine: Engine, message_id: str, action: Action) -> tuple[Message, State]:
    """The message and the state ``action`` takes it to."""
    m = await load(engine, message_id)
    return m, next_state(m.state, action)


async def move(engine: Engine, m: Message, target: State, actor: Actor, action: Action,
               audit: dict[str, object] | None = None, **values: object) -> bool:
    """The conditional state change from ``m.state`` (setting ``values``)
    and its audit row (with ``audit`` as extra detail). False when another
    request changed the state first."""

    def run(session: Session) -> bool:
        if not transition(session, m.id, (State(m.state),), target, **values):
            session.rollback()
            return False
        session.add(audit_row(actor, f"message.{action}", f"message:{m.id}",
                              **(audit or {}), **{"from": m.state, "to": target.value}))
        session.commit()
        return True

    done = await in_session(engine, run)
    if done:
        TRANSITIONS.labels(target.value).inc()
        log.info("message.transition", message_id=m.id, action=action.value, to=target.value, actor=actor.id)
    return done


async def move_or_conflict(engine: Engine, m: Message, target: State, actor: Actor, action: Action,
                           audit: dict[str, object] | None = None, **values: object) -> None:
    """``move``, or a TransitionError naming the state another request
    left the message in."""
    if not await move(engine, m, target, actor, action, audit, **values):
        now = await load(engine, m.id)
        raise TransitionError(State(now.state), action)
