"""Console sessions: each account has a session epoch in the database, and
a session is current while it carries that epoch; signing out bumps it, so
every session of the account ends, on every device and replica."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from services.feed.domain import BOOTSTRAP, Actor
from services.feed.store import StaffAccount, StaffSessionEpoch
from shared.db import in_session, insert_or_get


def _epoch(session: Session, actor_id: str) -> int:
    row = session.get(StaffSessionEpoch, actor_id)
    return row.epoch if row is not None else 0


async def session_epoch(engine: Engine, actor_id: str) -> int:
    return await in_session(engine, lambda s: _epoch(s, actor_id))


async def account_of(engine: Engine, actor_id: str, bootstrap_hash: str) -> tuple[Actor, str, int] | None:
    """The actor, the hash of its current token and its session epoch;
    None once revoked."""
    if actor_id == BOOTSTRAP.id:
        return BOOTSTRAP, bootstrap_hash, await session_epoch(engine, actor_id)

    def load(session: Session) -> tuple[StaffAccount | None, int]:
        return session.get(StaffAccount, actor_id), _epoch(session, actor_id)

    row, epoch = await in_session(engine, load)
    if row is None or row.revoked_at is not None:
        return None
    return Actor(id=row.id, name=row.name, role=row.role), row.token_hash, epoch


async def end_sessions(engine: Engine, actor_id: str, epoch: int) -> None:
    """Compare-and-set on ``epoch`` (the one the caller's session carries):
    a stale session cannot end the current ones."""

    def bump(s: Session) -> None:
        if s.get(StaffSessionEpoch, actor_id) is None:
            insert_or_get(s, StaffSessionEpoch(actor_id=actor_id, epoch=0), StaffSessionEpoch, actor_id)
        s.exec(update(StaffSessionEpoch).where(col(StaffSessionEpoch.actor_id) == actor_id,
                                               col(StaffSessionEpoch.epoch) == epoch)
               .values(epoch=StaffSessionEpoch.epoch + 1))
        s.commit()

    await in_session(engine, bump)
