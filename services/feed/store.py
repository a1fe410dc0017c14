"""Feed's storage: staff accounts and their audit trail, the taxonomy,
messages through their lifecycle, and the facts its aggregates count.

Facts are keyed by the id of the event that produced them, so a redelivered
event is counted once; they are joined only when read, so events arriving
out of order (a relay before its suggestion) count the same."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import JSON, Column, Index, Text, func, inspect, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, select

from services.feed.domain import MessageStats, State
from shared.events import new_id, utcnow
from shared.migrations import alembic_config, upgrade

MIGRATIONS = Path(__file__).with_name("migrations")
# Feed may share a database with another service (tests, small setups):
# its Alembic revisions are tracked in a table of its own.
VERSION_TABLE = "feed_alembic_version"


class FeedTable(SQLModel, registry=registry()):
    pass


# -- staff ----------------------------------------------------------------------------------------


class StaffAccount(FeedTable, table=True):
    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    role: str = Field(max_length=16)
    token_hash: str = Field(unique=True, max_length=64)  # SHA-256 of the token; the token is shown once
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(max_length=64)
    revoked_at: datetime | None = None
    revoked_by: str | None = Field(default=None, max_length=64)


class StaffSessionEpoch(FeedTable, table=True):
    """Console sessions carry the epoch they were opened in; signing out
    bumps it, ending every session of that account on every replica. A
    table of its own, not a column, because the bootstrap admin has no
    StaffAccount row and its sessions must end too."""

    actor_id: str = Field(primary_key=True, max_length=64)
    epoch: int = 0


class AuditEntry(FeedTable, table=True):
    """Who did what, when: every change staff (or the scheduler) make."""

    __table_args__ = (Index("ix_audit_target", "target"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor_id: str = Field(max_length=64, index=True)
    actor_name: str = Field(max_length=200)
    actor_role: str = Field(max_length=16)
    action: str = Field(max_length=64, index=True)
    target: str | None = Field(default=None, max_length=200)
    detail: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class TaxonomyVersion(FeedTable, table=True):
    """Each taxonomy the campaign had; the latest is in force."""

    id: int | None = Field(default=None, primary_key=True)
    digest: str = Field(max_length=64)
    terms: list[dict] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = Field(max_length=64)
    announced_at: datetime | None = None  # published on NATS


# -- messages -------------------------------------------------------------------------------------


class Message(FeedTable, table=True):
    __table_args__ = (Index("ix_message_due", "state", "publish_at"),
                      Index("ix_message_expiry", "state", "expires_at"))

    id: str = Field(primary_key=True, max_length=64)
    title: str
    body: str  # the Markdown source
    body_html: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    link: str | None = Field(default=None, max_length=2000)
    interests: list[str] = Field(sa_column=Column(JSON, nullable=False))
    regions: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    locales: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    priority: int = 1
    variants: dict = Field(sa_column=Column(JSON, nullable=False))
    state: str = Field(default=State.draft.value, max_length=16)
    publish_at: datetime | None = None
    expires_at: datetime | None = None
    idempotency_key: str | None = Field(default=None, unique=True, max_length=200)
    created_by: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    approved_by: str | None = Field(default=None, max_length=64)
    approved_at: datetime | None = None
    published_at: datetime | None = None
    withdrawn_at: datetime | None = None
    withdrawn_reason: str | None = Field(default=None, max_length=16)


# -- facts ------------------------------------------------------------------------------------------


class SuggestionFact(FeedTable, table=True):
    message_id: str = Field(primary_key=True, max_length=64)
    volunteer_id: str = Field(primary_key=True, max_length=64)
    audience_size: int


class SuggestionInterest(FeedTable, table=True):
    """The interests a suggestion matched: the per-interest breakdown."""

    message_id: str = Field(primary_key=True, max_length=64)
    volunteer_id: str = Field(primary_key=True, max_length=64)
    interest: str = Field(primary_key=True, max_length=64)


class SuggestionRegion(FeedTable, table=True):
    """The regions a suggestion reaches: the per-region breakdown."""

    message_id: str = Field(primary_key=True, max_length=64)
    volunteer_id: str = Field(primary_key=True, max_length=64)
    region: str = Field(primary_key=True, max_length=100)


class RelayFact(FeedTable, table=True):
    __table_args__ = (Index("ix_relayfact_volunteer", "message_id", "volunteer_id"),)

    relay_id: str = Field(primary_key=True, max_length=64)
    message_id: str = Field(index=True, max_length=64)
    volunteer_id: str | None = Field(default=None, max_length=64)


class RelayQueued(FeedTable, table=True):
    """The jobs a relay queued on one channel: a row per channel, so a new
    channel needs no new column."""

    relay_id: str = Field(primary_key=True, max_length=64)
    channel: str = Field(primary_key=True, max_length=32)
    message_id: str = Field(index=True, max_length=64)
    queued: int


class DeliveryFact(FeedTable, table=True):
    __table_args__ = (Index("ix_deliveryfact_volunteer", "message_id", "volunteer_id"),)

    job_id: str = Field(primary_key=True, max_length=64)
    message_id: str = Field(index=True, max_length=64)
    volunteer_id: str | None = Field(default=None, max_length=64)
    channel: str
    status: str
    reason: str | None = Field(default=None, max_length=200)
    at: datetime | None = Field(default=None, description="when the dispatcher reported it (the reach timeline)")


# -- schema ---------------------------------------------------------------------------------------

# Tables of the schema feed had before it was migrated by Alembic.
_BASELINE_TABLES = {"message", "suggestionfact", "relayfact", "deliveryfact"}


def create_schema(engine) -> None:
    """Bring the database to the current schema with Alembic. A database
    made before feed had migrations (its tables there, no version table) is
    first stamped at the baseline revision."""
    tables = set(inspect(engine).get_table_names())
    if _BASELINE_TABLES <= tables and VERSION_TABLE not in tables:
        from alembic import command

        cfg = alembic_config(MIGRATIONS)
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.stamp(cfg, "0001")
    upgrade(engine, MIGRATIONS)


def add_once(session: Session, *rows: FeedTable) -> bool:
    """Insert ``rows`` (in one transaction) unless their key is already
    there; True if inserted."""
    session.add_all(rows)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return False
    return True


def transition(session: Session, message_id: str, sources: tuple[State, ...], target: State,
               **values: object) -> bool:
    """Move a message from one of ``sources`` to ``target`` unless another
    request moved it first; True for the one that did. The caller commits
    (with its audit row)."""
    done = session.execute(
        update(Message)
        .where(Message.id == message_id, Message.state.in_([s.value for s in sources]))
        .values(state=target.value, updated_at=utcnow(), **values)
    )
    return done.rowcount == 1


# -- queries ---------------------------------------------------------------------------------------


def current_taxonomy(session: Session) -> TaxonomyVersion | None:
    return session.exec(select(TaxonomyVersion).order_by(TaxonomyVersion.id.desc()).limit(1)).first()


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
            select(func.coalesce(func.sum(RelayQueued.queued), 0)).where(
                RelayQueued.message_id == message_id, RelayQueued.channel == "email"
            )
        ),
        emails_delivered=count(delivered.where(DeliveryFact.status == "delivered")),
        emails_failed=count(delivered.where(DeliveryFact.status == "failed")),
    )


def reach_counts(session: Session, message_id: str) -> dict:
    """Raw counts for the reach of one message (suppressed by the caller)."""
    suggested, audience = session.exec(
        select(func.count(), func.coalesce(func.sum(SuggestionFact.audience_size), 0))
        .where(SuggestionFact.message_id == message_id)
    ).one()
    relays = session.exec(select(func.count()).where(RelayFact.message_id == message_id)).one()
    queued = dict(session.exec(
        select(RelayQueued.channel, func.sum(RelayQueued.queued))
        .where(RelayQueued.message_id == message_id).group_by(RelayQueued.channel)
    ).all())
    results = session.exec(
        select(DeliveryFact.channel, DeliveryFact.status, DeliveryFact.reason, func.count())
        .where(DeliveryFact.message_id == message_id)
        .group_by(DeliveryFact.channel, DeliveryFact.status, DeliveryFact.reason)
    ).all()

    return {
        "volunteers_suggested": suggested, "audience": audience, "relays": relays,
        "queued": queued,
        "results": [(channel, status, reason, n) for channel, status, reason, n in results],
        "by_interest": _breakdown(session, message_id, SuggestionInterest.interest),
        "by_region": _breakdown(session, message_id, SuggestionRegion.region),
    }


def delivered_times(session: Session, message_id: str) -> list[tuple[datetime, str]]:
    """(when, channel) of every delivered job of a message, oldest first."""
    return [(at, channel) for at, channel in session.exec(
        select(DeliveryFact.at, DeliveryFact.channel)
        .where(DeliveryFact.message_id == message_id, DeliveryFact.status == "delivered",
               DeliveryFact.at.is_not(None))
        .order_by(DeliveryFact.at)
    ).all()]


def _breakdown(session: Session, message_id: str, key) -> dict[str, dict[str, int]]:
    """Per value of ``key`` (a column of SuggestionInterest or
    SuggestionRegion): volunteers suggested, their audience, their relays
    and the jobs delivered."""
    fact = key.class_
    same_volunteer = lambda other: (other.message_id == fact.message_id) & (other.volunteer_id == fact.volunteer_id)  # noqa: E731
    rows: dict[str, dict[str, int]] = {}
    for value, n, aud in session.exec(
        select(key, func.count(), func.coalesce(func.sum(SuggestionFact.audience_size), 0))
        .join(SuggestionFact, same_volunteer(SuggestionFact), isouter=True)
        .where(fact.message_id == message_id).group_by(key)
    ).all():
        rows[value] = {"volunteers_suggested": n, "audience": aud, "relays": 0, "reached": 0}
    for value, n in session.exec(
        select(key, func.count(RelayFact.relay_id)).join(RelayFact, same_volunteer(RelayFact))
        .where(fact.message_id == message_id).group_by(key)
    ).all():
        rows[value]["relays"] = n
    for value, n in session.exec(
        select(key, func.count(DeliveryFact.job_id)).join(DeliveryFact, same_volunteer(DeliveryFact))
        .where(fact.message_id == message_id, DeliveryFact.status == "delivered").group_by(key)
    ).all():
        rows[value]["reached"] = n
    return rows
