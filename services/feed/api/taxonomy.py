"""The campaign's interest taxonomy: kept here, published on NATS so that
contacts and volunteers tag with the same words."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session

from services.feed.api.deps import engine, refused, require_role, unavailable
from services.feed.domain import Actor, Role, duplicate_terms, taxonomy_digest
from services.feed.publishing import Unavailable, announce_taxonomy, audit_row
from services.feed.store import TaxonomyVersion, current_taxonomy
from shared.db import in_session
from shared.events import TaxonomyTerm

router = APIRouter(prefix="/taxonomy", tags=["taxonomy"])


class TaxonomyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    terms: list[TaxonomyTerm] = Field(max_length=1000, description="the whole taxonomy: it replaces the last one")


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


@router.get("", summary="The taxonomy in force (empty until an admin sets one: any interest goes)")
async def get_taxonomy(request: Request, _actor: Actor = Depends(require_role(Role.editor))) -> TaxonomyOut:
    return taxonomy_out(await in_session(engine(request), current_taxonomy))


@router.put("", summary="Replace the taxonomy, and publish it (admin)")
async def put_taxonomy(body: TaxonomyIn, request: Request,
                       actor: Actor = Depends(require_role(Role.admin))) -> TaxonomyOut:
    """From now on, messages may only use these interests (and
    ``local:<commune>``). Messages already written keep theirs."""
    if problems := duplicate_terms(body.terms):
        raise refused(problems)
    terms = sorted(body.terms, key=lambda t: t.name)
    digest = taxonomy_digest(terms)

    def save(session: Session) -> TaxonomyVersion:
        current = current_taxonomy(session)
        if current is not None and current.digest == digest:
            return current  # the same taxonomy again: nothing new
        before = {t["name"] for t in current.terms} if current else set()
        after = {t.name for t in terms}
        version = TaxonomyVersion(digest=digest, terms=[t.model_dump() for t in terms], created_by=actor.id)
        session.add(version)
        session.flush()
        session.add(audit_row(actor, "taxonomy.update", f"taxonomy:{version.id}",
                              added=sorted(after - before), removed=sorted(before - after)))
        session.commit()
        return version

    version = await in_session(engine(request), save)
    try:
        await announce_taxonomy(engine(request), request.app.state.bus)
    except Unavailable as exc:
        # Stored: the scheduler publishes it as soon as NATS is back.
        raise unavailable(f"the taxonomy is saved but not yet published ({exc}); "
                          "it will be as soon as NATS answers") from exc
    return taxonomy_out(await in_session(engine(request), current_taxonomy))
