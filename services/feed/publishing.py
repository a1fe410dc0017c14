"""What feed tells the rest of Maillage, and when: a message going public
(now, or at its embargo), a message withdrawn or expired, the taxonomy.

The order is always "publish on NATS, then record": a message is marked
published only once JetStream acked it, so a crash in between leaves it to
be published again, and the ``Nats-Msg-Id`` (the message id) makes that
second publication a no-op. The state change is a conditional update with
its audit row in the same transaction: of two concurrent requests (or two
feed replicas' schedulers) one moves the message, the other sees it moved.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from prometheus_client import Counter
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.feed.domain import (
    LIVE,
    SCHEDULER,
    Action,
    Actor,
    Problem,
    State,
    TransitionError,
    next_state,
    schedule_problems,
)
from services.feed.store import AuditEntry, Message, TaxonomyVersion, current_taxonomy, transition
from shared.bus import Bus
from shared.catalogue import MESSAGE_PUBLISHED, MESSAGE_WITHDRAWN, TAXONOMY_PUBLISHED
from shared.db import in_session
from shared.events import MessagePublished, MessageWithdrawn, Taxonomy, TaxonomyTerm, Variants, utcnow

log = structlog.get_logger(__name__)

MESSAGES_PUBLISHED = Counter(
    "maillage_feed_campaign_messages_published_total", "Campaign messages published by staff."
)
TRANSITIONS = Counter("maillage_feed_message_transitions_total", "Message state changes.", ["to"])


class Unavailable(RuntimeError):
    """NATS did not take the event: nothing was recorded, try again."""


class NotFound(LookupError):
    pass


class Refused(ValueError):
    """The message breaks a rule at this moment (e.g. already expired)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.msg for p in problems))


def audit_row(actor: Actor, action: str, target: str | None = None, **detail: object) -> AuditEntry:
    return AuditEntry(actor_id=actor.id, actor_name=actor.name, actor_role=actor.role,
                      action=action, target=target, detail=detail)


def published_event(m: Message) -> MessagePublished:
    return MessagePublished(
        message_id=m.id, title=m.title, body=m.body, interests=tuple(m.interests),
        variants=Variants.model_validate(m.variants), link=m.link, regions=tuple(m.regions),
        locales=tuple(m.locales), priority=m.priority, expires_at=m.expires_at,
    )


async def load(engine: Engine, message_id: str) -> Message:
    m = await in_session(engine, lambda s: s.get(Message, message_id))
    if m is None:
        raise NotFound(message_id)
    return m


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


async def _send(bus: Bus, spec, event, msg_id: str) -> None:
    try:
        await bus.publish(spec, event, msg_id=msg_id)
    except Exception as exc:
        raise Unavailable(type(exc).__name__) from exc


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
        await _send(bus, MESSAGE_PUBLISHED, published_event(m), m.id)
        if await move(engine, m, State.published, actor, action, published_at=now):
            MESSAGES_PUBLISHED.inc()
            return await load(engine, message_id)
        after = await load(engine, message_id)
        if after.state in (State.withdrawn, State.expired):
            # Withdrawn while we published: the volunteers must hear it too.
            await _send(bus, MESSAGE_WITHDRAWN, MessageWithdrawn(
                message_id=m.id, reason=after.withdrawn_reason or "withdrawn"), f"{m.id}:withdrawn")
        if tolerate_done or after.state == State.published:
            return after
    return await load(engine, message_id)


async def withdraw(engine: Engine, bus: Bus, message_id: str, actor: Actor, *,
                   reason: str = "withdrawn") -> Message:
    """Take a message back. A live one is withdrawn on NATS first (its
    suggestions leave the inboxes, its pending jobs are dropped); one that
    never went out is just closed."""
    action = Action.expire if reason == "expired" else Action.withdraw
    for _ in range(3):
        m = await load(engine, message_id)
        target = next_state(m.state, action)
        now = utcnow()
        if m.state in LIVE:
            await _send(bus, MESSAGE_WITHDRAWN, MessageWithdrawn(message_id=m.id, reason=reason), f"{m.id}:withdrawn")
        if await move(engine, m, target, actor, action, withdrawn_at=now, withdrawn_reason=reason):
            return await load(engine, message_id)
    m = await load(engine, message_id)
    raise TransitionError(State(m.state), action)


# -- the taxonomy ------------------------------------------------------------------------------


def taxonomy_msg_id(version: TaxonomyVersion) -> str:
    """The content hash, qualified by the version: the same taxonomy
    announced twice (a restart, two replicas) is stored once, while going
    back to an earlier taxonomy (A → B → A) is news again."""
    return hashlib.sha256(f"{version.id}:{version.digest}".encode()).hexdigest()


async def announce_taxonomy(engine: Engine, bus: Bus, *, force: bool = False) -> bool:
    """Publish the taxonomy in force (if any); ``force``: even if it was
    announced already (on start). True if something was published."""
    version = await in_session(engine, current_taxonomy)
    if version is None or (version.announced_at is not None and not force):
        return False
    event = Taxonomy(terms=tuple(TaxonomyTerm.model_validate(t) for t in version.terms))
    await _send(bus, TAXONOMY_PUBLISHED, event, taxonomy_msg_id(version))

    def mark(session: Session) -> None:
        row = session.get(TaxonomyVersion, version.id)
        if row is not None and row.announced_at is None:
            row.announced_at = utcnow()
            session.add(row)
            session.commit()

    await in_session(engine, mark)
    log.info("taxonomy.announced", version=version.id, terms=len(version.terms))
    return True


# -- the clock ---------------------------------------------------------------------------------


def _ids(engine: Engine, state_in: tuple[State, ...], column, now: datetime):
    def query(session: Session) -> list[str]:
        return list(session.exec(
            select(Message.id).where(Message.state.in_([s.value for s in state_in]), column.is_not(None),
                                     column <= now).order_by(column).limit(200)
        ))

    return in_session(engine, query)


# Messages whose figures the scheduler keeps taking: the live ones, and for a
# day after they stop, while the last results (dropped jobs) come in.
REACH_AFTERLIFE = timedelta(days=1)


class Scheduler:
    """Publishes messages at their embargo and withdraws them at their
    expiry, from what the database says: nothing is kept in memory, so a
    restart (or another replica) picks up where it stopped.

    With ``reach`` (the staff report of one message, reporting.report bound
    to the settings), it also takes each live message's figures every
    ``reach_seconds``: the reach timeline is the history of what was shown,
    and would otherwise have points only when someone happened to look."""

    def __init__(self, engine: Engine, bus: Bus, interval: float,
                 reach: Callable[[Session, Message], object] | None = None, reach_seconds: float = 30.0) -> None:
        self.engine, self.bus, self.interval = engine, bus, interval
        self.reach, self.reach_seconds, self.reach_taken = reach, reach_seconds, float("-inf")
        self.task: asyncio.Task | None = None
        self.announce_pending = True  # the stored taxonomy, once per start

    async def tick(self) -> None:
        if self.announce_pending:
            await announce_taxonomy(self.engine, self.bus, force=True)
            self.announce_pending = False
        else:
            await announce_taxonomy(self.engine, self.bus)  # one stored while NATS was away
        now = utcnow()
        for message_id in await _ids(self.engine, (State.published, State.scheduled), Message.expires_at, now):
            await self._one(withdraw(self.engine, self.bus, message_id, SCHEDULER, reason="expired"), message_id)
        for message_id in await _ids(self.engine, (State.scheduled,), Message.publish_at, now):
            await self._one(publish(self.engine, self.bus, message_id, SCHEDULER, action=Action.release), message_id)
        if self.reach is not None and time.monotonic() - self.reach_taken >= self.reach_seconds:
            self.reach_taken = time.monotonic()
            await in_session(self.engine, lambda session: self._take_reach(session, now))

    def _take_reach(self, session: Session, now: datetime) -> None:
        since = now - REACH_AFTERLIFE
        for message in list(session.exec(select(Message).where(
                (Message.state == State.published.value) | (Message.withdrawn_at >= since)))):
            try:
                self.reach(session, message)
            except Exception as exc:  # one message's figures must not stop the others'
                session.rollback()
                log.error("reach.refresh_failed", message_id=message.id, error=type(exc).__name__)

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
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
            self.task = None
