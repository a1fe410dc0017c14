"""The taxonomy page: everyone sees the campaign's interests; an admin
replaces them, one per line: name | label in French | label in English."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from services.feed.api import taxonomy as api
from services.feed.domain import Actor, Role, role_allows
from services.feed.web.auth import allowed, web_actor
from shared.web.forms import lines
from shared.web.pages import problems, render, site_of
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
    current = await api.get_taxonomy(request, actor)
    return render(request, "taxonomy.html", status_code, taxonomy=current, text=as_text(current.terms) if text is None else text,
                  can_edit=role_allows(actor.role, Role.admin), **extra)


@router.get("")
async def taxonomy_page(request: Request, actor: Actor = Depends(web_actor)):
    return await page(request, actor)


@router.post("")
async def replace(request: Request, actor: Actor = Depends(web_actor)):
    allowed(request, Role.admin)
    text = (await request.form()).get("terms", "")
    try:
        await api.put_taxonomy(api.TaxonomyIn(terms=parse_terms(text)), request, actor)
    except (ValidationError, HTTPException) as exc:
        return await page(request, actor, getattr(exc, "status_code", 422), text, errors=problems(exc))
    except ValueError as exc:
        return await page(request, actor, 422, text, errors=[str(exc)])
    return RedirectResponse(f"{site_of(request).prefix}/taxonomy", status_code=303)
