"""The clock: publishes messages at their embargo and withdraws them at
their expiry through the same use cases as a publisher's request, and keeps
the reach timeline's points coming."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.feed.domain import State
from services.feed.errors import NotFound, TransitionError, Unavailable
from services.feed.settings import FeedSettings
from services.feed.store import Message
from services.feed.usecases import taxonomy
from services.feed.usecases.publish import release
from services.feed.usecases.read_messages import take_figures
from services.feed.usecases.withdraw import expire
from shared.messaging import Bus
from shared.db import in_session
from shared.events import utcnow
from shared.tasks import cancel_and_wait

log = structlog.get_logger(__name__)


def _ids(engine: Engine, state_in: tuple[State, ...], column, now: datetime):
    def query(session: Session) -> list[str]:
        return list(session.exec(
            select(Message.id).where(col(Message.state).in_([s.value for s in state_in]), column.is_not(None),
                                     column <= now).order_by(column).limit(200)
        ))

    return in_session(engine, query)


class Scheduler:
    """Publishes messages at their embargo and withdraws them at their
    expiry, from what the database says: nothing is kept in memory, so a
    restart (or another replica) picks up where it stopped.

    It also takes each live message's figures every
    ``reach_refresh_seconds``: the reach timeline is the history of what was
    shown, and would otherwise have points only when someone happened to look."""

    def __init__(self, engine: Engine, bus: Bus, settings: FeedSettings) -> None:
        self.engine, self.bus, self.settings = engine, bus, settings
        self.interval, self.reach_taken = settings.scheduler_seconds, float("-inf")
        self.task: asyncio.Task | None = None
        self.announce_pending = True  # the stored taxonomy, once per start

    async def tick(self) -> None:
        if self.announce_pending:
            await taxonomy.announce_taxonomy(self.engine, self.bus, force=True)
            self.announce_pending = False
        else:
            await taxonomy.announce_taxonomy(self.engine, self.bus)  # one stored while NATS was away
        now = utcnow()
        for message_id in await _ids(self.engine, (State.published, State.scheduled), Message.expires_at, now):
            await self._one(expire(self.engine, self.bus, message_id), message_id)
        for message_id in await _ids(self.engine, (State.scheduled,), Message.publish_at, now):
            await self._one(release(self.engine, self.bus, message_id), message_id)
        if time.monotonic() - self.reach_taken >= self.settings.reach_refresh_seconds:
            self.reach_taken = time.monotonic()
            await take_figures(self.engine, self.settings, now)

    async def _one(self, work, message_id: str) -> None:
        try:
            await work
        except (TransitionError, NotFound):
            pass  # someone else moved it first
        except Unavailable:
            raise
        except Exception as exc:  # one bad row must not stop the others
            log.error("schedule.message_failed", message_id=message_id, error=type(exc).__name__)

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS or the database away: try again next tick
                log.warning("schedule.tick_failed", error=type(exc).__name__)
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        self.task = asyncio.create_task(self.run(), name="feed-scheduler")

    async def stop(self) -> None:
        if self.task is not None:
            await cancel_and_wait([self.task])
            self.task = None
