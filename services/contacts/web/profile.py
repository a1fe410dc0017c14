"""My interests: which interests' counts the campaign sees (the opt-in
profile), with the counts it would see for each, and which of them are
relayed without a click (auto-relay)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from sqlmodel import Session

from services.contacts import book as book_ops
from services.contacts import domain
from services.contacts.relay import auto as auto_relay
from services.contacts.api.accounts import SharingIn
from services.contacts.api.deps import ContactsDep
from services.contacts.store import Volunteer
from services.contacts.usecases import read_book
from services.contacts.usecases._unit import Contacts, unit
from services.contacts.usecases.share_profile import share_profile
from services.contacts.web.auth import web_volunteer
from services.contacts.web.inbox import language_labels
from services.contacts.web.refusals import REFUSALS, refusal
from shared.web.pages import render, site_of
from shared.web.session import csrf_protect

router = APIRouter(prefix="/app/interests", include_in_schema=False, dependencies=[Depends(csrf_protect)])


def book_interests(session: Session, volunteer_id: str) -> tuple[set[str], dict[str, int]]:
    """Every interest of the book, and its confirmed contacts (what the
    profile would count), shared or not."""
    views = book_ops.views(session, volunteer_id)
    profile = domain.interest_profile(views, None)
    return ({i for v in views for i in v.interests},
            {interest: sum(per_channel.values()) for interest, per_channel in profile.items()})


async def page(request: Request, ctx: Contacts, vol: Volunteer, status_code: int = 200, **extra):
    present, counts = await unit(ctx.engine, lambda s: book_interests(s, vol.id))
    taxonomy = [term.name for term in await read_book.taxonomy(ctx, vol)]
    interests = sorted(present | set(taxonomy))
    shared = None if vol.shared_interests is None else set(vol.shared_interests)
    # the campaign's words (a suggestion never carries another), or any before it sets them
    return render(request, "interests.html", status_code, interests=interests, counts=counts, shared=shared,
                  auto_choices=sorted(taxonomy) or interests, auto=auto_relay.effective(vol),
                  labels=await language_labels(request), **extra)


@router.get("")
async def interests_page(request: Request, ctx: ContactsDep, vol: Volunteer = Depends(web_volunteer)):
    return await page(request, ctx, vol)


@router.post("")
async def share(request: Request, ctx: ContactsDep, vol: Volunteer = Depends(web_volunteer)):
    form = await request.form()
    chosen = None if form.get("share") == "all" else form.getlist("interests")
    try:
        body = SharingIn(shared_interests=chosen, auto_relay_interests=form.getlist("auto_relay"))
        await share_profile(ctx, vol.id, body.shared_interests, body.auto_relay_interests)
    except REFUSALS as exc:
        code, errors = refusal(exc)
        return await page(request, ctx, vol, code, errors=errors)
    return RedirectResponse(f"{site_of(request).prefix}/interests", status_code=303)
