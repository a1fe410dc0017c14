"""Feed's storage: staff accounts and their audit trail, the taxonomy,
messages through their lifecycle, and the facts its aggregates count.

Facts are keyed by the id of the event that produced them, so a redelivered
event is counted once; they are joined only when read, so events arriving
out of order (a relay before its suggestion) count the same."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import JSON, Column, Index, Text, func, inspect, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, col, select

from services.feed.domain import UNKNOWN_VOLUNTEER, Facts, State
from shared.events import new_id, utcnow
from shared.migrations import alembic_config, upgrade
from shared.outcomes import OutcomeKind, stored_kind

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
    # When feed recorded it (its interests and regions, written with it,
    # too): the staff report counts who changed a figure since it was shown.
    recorded_at: datetime | None = Field(default_factory=utcnow)


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
    recorded_at: datetime | None = Field(default_factory=utcnow)  # its RelayQueued rows too


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
    outcome: str | None = Field(default=None, max_length=32)  # an OutcomeKind; None in rows from before it
    at: datetime | None = Field(default=None, description="when the dispatcher reported it")
    recorded_at: datetime | None = Field(default_factory=utcnow)
    # a later report changed the outcome (a bounce after delivery): what it was, and when it changed
    revised_from: str | None = Field(default=None, max_length=32)
    revised_at: datetime | None = None

    def kind(self) -> OutcomeKind | None:
        return stored_kind(self.outcome, self.status, self.reason)


class ReachShown(FeedTable, table=True):
    """What staff were last shown of one message's reach (domain.ShownState
    as JSON). A new report may only move it forward, by compare-and-set on
    ``version``, so every replica and every restart shows the same figures."""

    message_id: str = Field(primary_key=True, max_length=64)
    version: int = 0
    state: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow)


# -- schema ---------------------------------------------------------------------------------------

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

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


def revise_delivery(session: Session, fact: DeliveryFact) -> bool:
    """Record ``fact``, or move its job's recorded fact to ``fact``'s outcome
    (a bounce is final: it arrives after the job's result, or before it, and
    then that result is the duplicate). True if anything changed."""
    if add_once(session, fact):
        return True
    known = session.get(DeliveryFact, fact.job_id)
    if known is None or known.outcome == fact.outcome:
        return False  # a redelivered revision
    known.revised_from, known.revised_at = known.kind(), utcnow()
    known.status, known.reason, known.outcome = fact.status, fact.reason, fact.outcome
    session.add(known)
    session.commit()
    return True


def transition(session: Session, message_id: str, sources: tuple[State, ...], target: State,
               **values: object) -> bool:
    """Move a message from one of ``sources`` to ``target`` unless another
    request moved it first; True for the one that did. The caller commits
    (with its audit row)."""
    done = session.exec(
        update(Message)
        .where(col(Message.id) == message_id, col(Message.state).in_([s.value for s in sources]))
        .values(state=target.value, updated_at=utcnow(), **values)
    )
    return done.rowcount == 1


# -- queries ---------------------------------------------------------------------------------------


def current_taxonomy(session: Session) -> TaxonomyVersion | None:
    return session.exec(select(TaxonomyVersion).order_by(col(TaxonomyVersion.id).desc()).limit(1)).first()


def facts_fingerprint(session: Session, message_id: str, cut: datetime) -> tuple:
    """How many facts a message has up to ``cut`` and the newest one's
    time, and the newest change of a delivery's outcome (a bounce moves
    no count): unchanged, the staff report would be the same. (Interests,
    regions and queued jobs are written with their suggestion or relay.)"""
    return (*(session.exec(
        select(func.count(), func.max(fact.recorded_at))
        .where(col(fact.message_id) == message_id, (col(fact.recorded_at) <= cut) | col(fact.recorded_at).is_(None))).one()
        for fact in (SuggestionFact, RelayFact, DeliveryFact)),
        session.exec(select(func.max(DeliveryFact.revised_at))
                     .where(col(DeliveryFact.message_id) == message_id, col(DeliveryFact.revised_at) <= cut)).one())


def message_facts(session: Session, message_id: str, cut: datetime) -> Facts:
    """What feed recorded about a message up to ``cut``, for the staff
    report only (domain.staff_report): nothing else reads facts for staff.
    Facts from before ``recorded_at`` existed count as the oldest."""

    def until(column):
        return (column <= cut) | column.is_(None)

    def epoch(at: datetime | None) -> datetime:
        return at or EPOCH

    def who(volunteer_id: str | None) -> str:
        return volunteer_id or UNKNOWN_VOLUNTEER

    suggestions = [(who(v), n, epoch(at)) for v, n, at in session.exec(
        select(SuggestionFact.volunteer_id, SuggestionFact.audience_size, SuggestionFact.recorded_at)
        .where(SuggestionFact.message_id == message_id, until(SuggestionFact.recorded_at)))]
    interests = list(session.exec(select(SuggestionInterest.volunteer_id, SuggestionInterest.interest)
                                  .where(SuggestionInterest.message_id == message_id)))
    regions = list(session.exec(select(SuggestionRegion.volunteer_id, SuggestionRegion.region)
                                .where(SuggestionRegion.message_id == message_id)))
    queued: dict[str, dict[str, int]] = {}
    for relay_id, channel, n in session.exec(select(RelayQueued.relay_id, RelayQueued.channel, RelayQueued.queued)
                                             .where(RelayQueued.message_id == message_id)):
        queued.setdefault(relay_id, {})[channel] = n
    relays: list[tuple[str, datetime, Mapping[str, int]]] = [(who(v), epoch(at), queued.get(relay_id, {})) for relay_id, v, at in session.exec(
        select(RelayFact.relay_id, RelayFact.volunteer_id, RelayFact.recorded_at)
        .where(RelayFact.message_id == message_id, until(RelayFact.recorded_at)))]
    deliveries: list[tuple[str, str, OutcomeKind, OutcomeKind | None, int, datetime]] = []
    columns = (DeliveryFact.volunteer_id, DeliveryFact.channel, DeliveryFact.status, DeliveryFact.reason,
               DeliveryFact.outcome, DeliveryFact.revised_from, DeliveryFact.revised_at)
    for v, channel, status, reason, outcome, revised_from, revised_at, n, at in session.exec(
            # sqlmodel's select is typed for at most four columns
            select(*columns, func.count(), func.max(DeliveryFact.recorded_at))  # type: ignore[call-overload]
            .where(DeliveryFact.message_id == message_id, until(DeliveryFact.recorded_at))
            .group_by(*columns)):
        kind = stored_kind(outcome, status, reason)
        if kind is None:
            continue
        if revised_at is None:
            deliveries.append((who(v), channel, kind, None, n, epoch(at)))
        elif revised_at > cut:  # changed after this cut: as it stood then
            deliveries.append((who(v), channel, OutcomeKind(revised_from), None, n, epoch(at)))
        else:
            deliveries.append((who(v), channel, kind, OutcomeKind(revised_from), n, max(epoch(at), revised_at)))
    return Facts(suggestions=suggestions, interests=interests, regions=regions, relays=relays, deliveries=deliveries)
