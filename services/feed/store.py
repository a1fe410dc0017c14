"""Feed's storage: messages and the facts its aggregates count.

Facts are keyed by the id of the event that produced them, so a redelivered
event is counted once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, select

from services.feed.domain import MessageStats
from shared.events import utcnow


class FeedTable(SQLModel, registry=registry()):
    pass


class Message(FeedTable, table=True):
    id: str = Field(primary_key=True, max_length=64)
    title: str
    body: str
    interests: list[str] = Field(sa_column=Column(JSON, nullable=False))
    variants: dict = Field(sa_column=Column(JSON, nullable=False))
    idempotency_key: str | None = Field(default=None, unique=True, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    published_at: datetime | None = None


class SuggestionFact(FeedTable, table=True):
    message_id: str = Field(primary_key=True, max_length=64)
    volunteer_id: str = Field(primary_key=True, max_length=64)
    audience_size: int


class RelayFact(FeedTable, table=True):
    relay_id: str = Field(primary_key=True, max_length=64)
    message_id: str = Field(index=True, max_length=64)
    emails_queued: int


class DeliveryFact(FeedTable, table=True):
    job_id: str = Field(primary_key=True, max_length=64)
    message_id: str = Field(index=True, max_length=64)
    channel: str
    status: str


def create_schema(engine) -> None:
    FeedTable.metadata.create_all(engine)


def add_once(session: Session, row: FeedTable) -> bool:
    """Insert ``row`` unless its key is already there; True if inserted."""
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True


def message_stats(session: Session, message_id: str) -> MessageStats:
    def count(stmt) -> int:
        return session.exec(stmt).one() or 0

    delivered = select(func.count()).where(
        DeliveryFact.message_id == message_id, DeliveryFact.channel == "email"
    )
    return MessageStats(
        volunteers_suggested=count(
            select(func.count()).where(SuggestionFact.message_id == message_id)
        ),
        relays=count(select(func.count()).where(RelayFact.message_id == message_id)),
        emails_queued=count(
            select(func.coalesce(func.sum(RelayFact.emails_queued), 0)).where(
                RelayFact.message_id == message_id
            )
        ),
        emails_delivered=count(delivered.where(DeliveryFact.status == "delivered")),
        emails_failed=count(delivered.where(DeliveryFact.status == "failed")),
    )
