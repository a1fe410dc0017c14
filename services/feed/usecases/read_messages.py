"""Staff read messages and how far each went. Reading a message's figures
may move them (reporting.report stores what it shows, so no replica shows a
fresher one), which is why reading is a use case with its transaction."""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.feed import content
from services.feed.domain import MessageStats, StaffReport, State
from services.feed.errors import NotFound
from services.feed.reporting import displayed, report
from services.feed.settings import FeedSettings
from services.feed.store import Message
from services.feed.usecases.moves import load
from shared.db import in_session
from shared.events import Variants


log = structlog.get_logger(__name__)

# Messages whose figures the scheduler keeps taking: the live ones, and for a
# day after they stop, while the last results (dropped jobs) come in.
REACH_AFTERLIFE = timedelta(days=1)


class MessageOut(BaseModel):
    id: str
    state: State
    title: str
    body: str
    body_html: str
    link: str | None
    interests: list[str]
    regions: list[str]
    locales: list[str]
    priority: int
    variants: Variants
    short_post: str | None
    publish_at: datetime | None
    expires_at: datetime | None
    created_at: datetime
    created_by: str | None
    updated_at: datetime
    approved_at: datetime | None
    approved_by: str | None
    published_at: datetime | None
    withdrawn_at: datetime | None
    withdrawn_reason: str | None
    stats: MessageStats = Field(
        description="headline figures, the same k-anonymous cells as GET /messages/{id}/reach: "
        "hidden under k volunteers, moving only when k more contributed")


def staff_figures(session: Session, m: Message, settings: FeedSettings) -> StaffReport:
    """The only way to a staff figure (see domain.staff_report)."""
    return report(session, m, settings.k_anonymity, settings.reach_settle_seconds)


def view(session: Session, m: Message, settings: FeedSettings, *, listed: bool = False) -> MessageOut:
    """``listed``: a row of the message list, with the figures as last shown
    (reading every message's facts would make the list slow)."""
    variants = Variants.model_validate(m.variants)
    return MessageOut(
        id=m.id, state=State(m.state), title=m.title, body=m.body,
        body_html=m.body_html or content.render_markdown(m.body), link=m.link, interests=m.interests,
        regions=m.regions, locales=m.locales, priority=m.priority, variants=variants,
        short_post=content.short_post(variants.short.text, m.link) if variants.short else None,
        publish_at=m.publish_at, expires_at=m.expires_at, created_at=m.created_at, created_by=m.created_by,
        updated_at=m.updated_at, approved_at=m.approved_at, approved_by=m.approved_by,
        published_at=m.published_at, withdrawn_at=m.withdrawn_at, withdrawn_reason=m.withdrawn_reason,
        stats=(displayed(session, m, settings.k_anonymity) if listed
               else staff_figures(session, m, settings)).stats,
    )


async def _one(engine: Engine, message_id: str, read):
    def load(session: Session):
        m = session.get(Message, message_id)
        return read(session, m) if m else None

    found = await in_session(engine, load)
    if found is None:
        raise NotFound("message")
    return found


async def stored_message(engine: Engine, message_id: str) -> Message:
    """The message as stored: what the console's edit form starts from."""
    return await load(engine, message_id)


async def read_message(engine: Engine, settings: FeedSettings, message_id: str) -> MessageOut:
    return await _one(engine, message_id, lambda session, m: view(session, m, settings))


async def read_figures(engine: Engine, settings: FeedSettings, message_id: str) -> StaffReport:
    return await _one(engine, message_id, lambda session, m: staff_figures(session, m, settings))


async def list_messages(engine: Engine, settings: FeedSettings, *, limit: int,
                        state: State | None = None) -> list[MessageOut]:
    """Newest first."""

    def load(session: Session) -> list[MessageOut]:
        q = select(Message)
        if state is not None:
            q = q.where(Message.state == state.value)
        rows = list(session.exec(q.order_by(col(Message.created_at).desc(), col(Message.id)).limit(limit)))
        return [view(session, m, settings, listed=True) for m in rows]

    return await in_session(engine, load)


async def take_figures(engine: Engine, settings: FeedSettings, now: datetime) -> None:
    """The scheduler reads every live message's figures, as staff would:
    the timeline gets its points whether or not someone looks."""

    def take(session: Session) -> None:
        since = now - REACH_AFTERLIFE
        for message in list(session.exec(select(Message).where(
                (col(Message.state) == State.published.value) | (col(Message.withdrawn_at) >= since)))):
            try:
                staff_figures(session, message, settings)
            except Exception as exc:  # one message's figures must not stop the others'
                session.rollback()
                log.error("reach.refresh_failed", message_id=message.id, error=type(exc).__name__)

    await in_session(engine, take)
