"""The inbox: each suggestion with why it fits and what each channel will
carry, one button to relay it everywhere, then what became of it."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlmodel import Session, select

from services.contacts.api.deps import ContactsDep, contacts
from services.contacts.api.inbox import RelayRequest, entry_out, relay_out
from services.contacts.networks import SOCIAL
from services.contacts.store import TaxonomyTerm, Volunteer
from services.contacts.usecases import connect_network, read_inbox
from services.contacts.usecases._unit import unit
from services.contacts.usecases.relay import relay_suggestion
from services.contacts.web.auth import web_volunteer
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
    return await unit(contacts(request).engine, lambda s: labels(s, lang))


@router.get("/inbox")
async def inbox_page(request: Request, ctx: ContactsDep, vol: Volunteer = Depends(web_volunteer)):
    found = await read_inbox.inbox(ctx, vol)
    entries = [entry_out(e) for e in found]
    messages = {e.message.message_id: e.message for e in found if e.message is not None}
    # the post preview names the social accounts a relay posts on (an email identity posts nothing)
    connected = [n for n in await connect_network.statuses(ctx, vol) if n.connected and n.network in SOCIAL]
    posts = {mid: short_post(m.short_text or m.title, m.link) for mid, m in messages.items()}
    return render(request, "inbox.html", entries=entries, messages=messages, posts=posts, connected=connected,
                  labels=await language_labels(request))


@router.post("/inbox/{suggestion_id}/relay")
async def relay(suggestion_id: str, request: Request, ctx: ContactsDep, vol: Volunteer = Depends(web_volunteer)):
    """A refusal (withdrawn message, NATS down: "click again", a note too
    long) becomes the error page, which names it."""
    form = await request.form()
    try:
        body = RelayRequest(note=form.get("note") or None)
    except ValidationError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY,
                            detail=f"note: {exc.errors()[0]['msg']}") from None
    relay_id, _ = await relay_suggestion(ctx, vol, suggestion_id, note=body.note or None)
    # Post/redirect/get: reloading the result page relays nothing again.
    return RedirectResponse(f"{site_of(request).prefix}/relays/{relay_id}", status_code=303)


@router.get("/relays/{relay_id}")
async def relay_page(relay_id: str, request: Request, ctx: ContactsDep, vol: Volunteer = Depends(web_volunteer)):
    found = await read_inbox.relay_outcome(ctx, vol, relay_id)
    outcome, title = relay_out(found), getattr(found.message, "title", "")
    pending = any(c.status in PENDING for c in outcome.channels.values())
    return render(request, "relay.html", outcome=outcome, title=title, pending=pending)


@router.get("/relays/{relay_id}/status")
async def relay_status(relay_id: str, ctx: ContactsDep, vol: Volunteer = Depends(web_volunteer)):
    """For relay.js, which updates the counts while emails go out."""
    return relay_out(await read_inbox.relay_outcome(ctx, vol, relay_id)).model_dump(exclude_none=True)
