"""A publisher approves a draft."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from services.feed.domain import Action, Actor
from services.feed.usecases.moves import movable, move_or_conflict
from shared.events import utcnow


async def approve(engine: Engine, message_id: str, actor: Actor) -> None:
    m, target = await movable(engine, message_id, Action.approve)
    await move_or_conflict(engine, m, target, actor, Action.approve, approved_by=actor.id, approved_at=utcnow())
