"""The taxonomy page: everyone sees the campaign's interests; an admin
replaces them, one per line: name | label in French | label in English."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse

from services.feed.api import deps
from services.feed.api.deps import BusDep, EngineDep
from services.feed.api.taxonomy import TaxonomyIn
from services.feed.domain import Actor, Role, role_allows
from services.feed.usecases.taxonomy import read_taxonomy, replace_taxonomy
from services.feed.web.auth import allowed, web_actor
from services.feed.web.messages import REFUSALS, refusal
from shared.web.forms import field, lines
from shared.web.pages import render, site_of
from shared.web.session import csrf_protect

router = APIRouter(prefix="/console/taxonomy", include_in_schema=False, dependencies=[Depends(csrf_protect)])


def parse_terms(text: str) -> list[dict]:
    """"education | Éducation | Education" per line; the labels default to the name."""
    terms = []
    for number, line in enumerate(lines(text), start=1):
        name, *labels = [part.strip() for part in line.split("|")]
        if len(labels) > 2:
            raise ValueError(f"terms: line {number} has more than three parts (name | français | English)")
        fr = labels[0] if labels else name
        terms.append({"name": name, "label_fr": fr, "label_en": labels[1] if len(labels) > 1 else fr})
    return terms


def as_text(terms) -> str:
    return "\n".join(f"{t.name} | {t.label_fr} | {t.label_en}" for t in terms)


async def page(request: Request, actor: Actor, status_code: int = 200, text: str | None = None, **extra):
    current = await read_taxonomy(deps.engine(request))
    return render(request, "taxonomy.html", status_code, taxonomy=current, text=as_text(current.terms) if text is None else text,
                  can_edit=role_allows(actor.role, Role.admin), **extra)


@router.get("")
async def taxonomy_page(request: Request, actor: Actor = Depends(web_actor)):
    return await page(request, actor)


@router.post("")
async def replace(request: Request, engine: EngineDep, bus: BusDep, actor: Actor = Depends(web_actor)):
    allowed(request, Role.admin)
    text = field(await request.form(), "terms") or ""
    try:
        await replace_taxonomy(engine, bus, TaxonomyIn(terms=parse_terms(text)).terms, actor)
    except REFUSALS as exc:
        code, reasons = refusal(exc)
        return await page(request, actor, code, text, errors=reasons)
    return RedirectResponse(f"{site_of(request).prefix}/taxonomy", status_code=303)
