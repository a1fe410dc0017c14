"""The inbox: each suggestion with why it fits and what each channel will
carry, one button to relay it everywhere, then what became of it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlmodel import Session, select

from services.contacts.api import inbox as inbox_api
from services.contacts.api import networks as networks_api
from services.contacts.networks import SOCIAL
from services.contacts.store import CampaignMessage, TaxonomyTerm, Volunteer
from services.contacts.web.auth import web_volunteer
from shared.db import in_session
from shared.postlength import short_post
from shared.web.pages import render, site_of
from shared.web.session import csrf_protect

router = APIRouter(prefix="/app", include_in_schema=False, dependencies=[Depends(csrf_protect)])
PENDING = frozenset({"sending", "queued"})


def labels(session: Session, lang: str) -> dict[str, str]:
    """Interest names as the campaign labels them, in the reader's language."""
    return {t.name: (t.label_fr if lang == "fr" else t.label_en) for t in session.exec(select(TaxonomyTerm))}


async def language_labels(request: Request) -> dict[str, str]:
    lang = site_of(request).catalog.language(request)
    return await in_session(request.app.state.engine, lambda s: labels(s, lang))


@router.get("/inbox")
async def inbox_page(request: Request, vol: Volunteer = Depends(web_volunteer)):
    entries = await inbox_api.inbox(request, vol)
    ids = [e.message_id for e in entries]
    messages = await in_session(request.app.state.engine, lambda s: {
        m.message_id: m for m in s.exec(select(CampaignMessage).where(CampaignMessage.message_id.in_(ids)))})
    # the post preview names the social accounts a relay posts on (an email identity posts nothing)
    connected = [n for n in await networks_api.list_networks(request, vol) if n.connected and n.network in SOCIAL]
    posts = {mid: short_post(m.short_text or m.title, m.link) for mid, m in messages.items()}
    return render(request, "inbox.html", entries=entries, messages=messages, posts=posts, connected=connected,
                  labels=await language_labels(request))


@router.post("/inbox/{suggestion_id}/relay")
async def relay(suggestion_id: str, request: Request, vol: Volunteer = Depends(web_volunteer)):
    """A refusal (withdrawn message, NATS down: "click again", a note too
    long) becomes the error page, which names it."""
    form = await request.form()
    try:
        body = inbox_api.RelayRequest(note=form.get("note") or None)
    except ValidationError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY,
                            detail=f"note: {exc.errors()[0]['msg']}") from None
    done = await inbox_api.relay(suggestion_id, request, body=body, vol=vol)
    # Post/redirect/get: reloading the result page relays nothing again.
    return RedirectResponse(f"{site_of(request).prefix}/relays/{done.relay_id}", status_code=303)


@router.get("/relays/{relay_id}")
async def relay_page(relay_id: str, request: Request, vol: Volunteer = Depends(web_volunteer)):
    outcome = await inbox_api.relay_status(relay_id, request, vol)
    title = await in_session(request.app.state.engine, lambda s: getattr(
        s.get(CampaignMessage, outcome.message_id), "title", ""))
    pending = any(c.status in PENDING for c in outcome.channels.values())
    return render(request, "relay.html", outcome=outcome, title=title, pending=pending)


@router.get("/relays/{relay_id}/status")
async def relay_status(relay_id: str, request: Request, vol: Volunteer = Depends(web_volunteer)):
    """For relay.js, which updates the counts while emails go out."""
    return (await inbox_api.relay_status(relay_id, request, vol)).model_dump(exclude_none=True)
