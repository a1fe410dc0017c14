"""The campaign's interest taxonomy: an admin replaces it; it is published
on NATS so that contacts and volunteers tag with the same words, and
announced again on every start (the scheduler) in case one was missed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import structlog
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.feed import publishing
from services.feed.domain import Actor, duplicate_terms, taxonomy_digest
from services.feed.errors import Refused, Unavailable
from services.feed.store import TaxonomyVersion, current_taxonomy
from services.feed.usecases.audit import audit_row
from shared.messaging import Bus
from shared.db import in_session
from shared.events import TaxonomyTerm, utcnow

log = structlog.get_logger(__name__)


class TaxonomyOut(BaseModel):
    version: int | None
    digest: str | None
    terms: list[TaxonomyTerm]
    updated_at: datetime | None
    updated_by: str | None
    announced: bool = Field(description="published on NATS")
    note: str = "interests of the form local:<commune> are always allowed"


def taxonomy_out(v: TaxonomyVersion | None) -> TaxonomyOut:
    if v is None:
        return TaxonomyOut(version=None, digest=None, terms=[], updated_at=None, updated_by=None, announced=False)
    return TaxonomyOut(version=v.id, digest=v.digest, terms=[TaxonomyTerm.model_validate(t) for t in v.terms],
                       updated_at=v.created_at, updated_by=v.created_by, announced=v.announced_at is not None)


async def read_taxonomy(engine: Engine) -> TaxonomyOut:
    return taxonomy_out(await in_session(engine, current_taxonomy))


async def announce_taxonomy(engine: Engine, bus: Bus, *, force: bool = False) -> bool:
    """Publish the taxonomy in force (if any); ``force``: even if it was
    announced already (on start). True if something was published."""
    version = await in_session(engine, current_taxonomy)
    if version is None or (version.announced_at is not None and not force):
        return False
    await publishing.taxonomy_published(bus, version)

    def mark(session: Session) -> None:
        row = session.get(TaxonomyVersion, version.id)
        if row is not None and row.announced_at is None:
            row.announced_at = utcnow()
            session.add(row)
            session.commit()

    await in_session(engine, mark)
    log.info("taxonomy.announced", version=version.id, terms=len(version.terms))
    return True


async def replace_taxonomy(engine: Engine, bus: Bus, terms: Sequence[TaxonomyTerm],
                           actor: Actor) -> TaxonomyOut:
    """From now on, messages may only use these interests (and
    ``local:<commune>``). Messages already written keep theirs."""
    if problems := duplicate_terms(terms):
        raise Refused(problems)
    terms = sorted(terms, key=lambda t: t.name)
    digest = taxonomy_digest(terms)

    def save(session: Session) -> None:
        current = current_taxonomy(session)
        if current is not None and current.digest == digest:
            return  # the same taxonomy again: nothing new
        before = {t["name"] for t in current.terms} if current else set()
        after = {t.name for t in terms}
        version = TaxonomyVersion(digest=digest, terms=[t.model_dump() for t in terms], created_by=actor.id)
        session.add(version)
        session.flush()
        session.add(audit_row(actor, "taxonomy.update", f"taxonomy:{version.id}",
                              added=sorted(after - before), removed=sorted(before - after)))
        session.commit()

    await in_session(engine, save)
    try:
        await announce_taxonomy(engine, bus)
    except Unavailable as exc:
        # Stored: the scheduler publishes it as soon as NATS is back.
        raise Unavailable(f"the taxonomy is saved but not yet published ({exc}); "
                          "it will be as soon as NATS answers") from exc
    return await read_taxonomy(engine)
