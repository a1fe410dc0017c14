"""The campaign's interest taxonomy: kept here, published on NATS so that
contacts and volunteers tag with the same words."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from services.feed.api.deps import Admin, BusDep, Editor, EngineDep
from services.feed.usecases.taxonomy import TaxonomyOut, read_taxonomy, replace_taxonomy
from shared.events import TaxonomyTerm

router = APIRouter(prefix="/taxonomy", tags=["taxonomy"])


class TaxonomyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    terms: list[TaxonomyTerm] = Field(max_length=1000, description="the whole taxonomy: it replaces the last one")


@router.get("", summary="The taxonomy in force (empty until an admin sets one: any interest goes)")
async def get_taxonomy(engine: EngineDep, _actor: Editor) -> TaxonomyOut:
    return await read_taxonomy(engine)


@router.put("", summary="Replace the taxonomy, and publish it (admin)")
async def put_taxonomy(body: TaxonomyIn, engine: EngineDep, bus: BusDep, actor: Admin) -> TaxonomyOut:
    """From now on, messages may only use these interests (and
    ``local:<commune>``). Messages already written keep theirs."""
    return await replace_taxonomy(engine, bus, body.terms, actor)
