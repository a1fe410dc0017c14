"""Messages in the console: the list, compose (draft or publish, now or at
a time), one message with its actions, and the live counters' endpoint."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field, ValidationError

from services.feed.api import messages as api
from services.feed.api.deps import limits
from services.feed.api.taxonomy import get_taxonomy
from services.feed.domain import Actor, MessageDraft, MessagePatch, Role, State, role_allows
from services.feed.store import Message
from services.feed.web.auth import allowed, web_actor
from services.feed.web.compose import as_form, draft_fields, measure, preview_html
from shared.db import in_session
from shared.web.pages import problems, render, site_of
from shared.web.session import csrf_protect

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(csrf_protect)])


def refusal(exc: Exception) -> tuple[int, list[str]]:
    """A refused form: its status and the sentences naming each field."""
    if isinstance(exc, (HTTPException, ValidationError)):
        return getattr(exc, "status_code", 422), problems(exc)
    return 422, [str(exc)]  # a ValueError of ours already names its field


def message_path(request: Request, message_id: str) -> str:
    return f"{site_of(request).prefix}/messages/{message_id}"


@router.get("/messages")
async def list_page(request: Request, actor: Actor = Depends(web_actor)):
    rows = await api.list_messages(request, actor, 100, None)
    return render(request, "messages.html", messages=rows, actor=actor, k=request.app.state.settings.k_anonymity)


async def compose_page(request: Request, actor: Actor, form: dict | None = None, status_code: int = 200,
                       editing: str | None = None, **extra):
    taxonomy = await get_taxonomy(request, actor)
    return render(request, "compose.html", status_code, form=form or {}, taxonomy=taxonomy.terms,
                  can_publish=role_allows(actor.role, Role.publisher), editing=editing,
                  idempotency_key=secrets.token_urlsafe(16), limits=limits(request), **extra)


@router.get("/compose")
async def compose(request: Request, actor: Actor = Depends(web_actor)):
    allowed(request, Role.editor)
    return await compose_page(request, actor)


@router.post("/compose")
async def save(request: Request, actor: Actor = Depends(web_actor)):
    """"draft" stores a draft (editor); "publish" writes and publishes in one
    step (publisher), or schedules it when publish_at is ahead."""
    form = await request.form()
    publishing = form.get("action") == "publish"
    allowed(request, Role.publisher if publishing else Role.editor)
    key = form.get("idempotency_key") or None  # a double submit makes one message
    try:
        draft = MessageDraft.model_validate(draft_fields(form))
        made = await (api.publish_message if publishing else api.create_draft)(draft, request, actor, key)
    except (ValidationError, ValueError, HTTPException) as exc:
        code, reasons = refusal(exc)
        return await compose_page(request, actor, dict(form), code, errors=reasons)
    return RedirectResponse(message_path(request, made.id), status_code=303)


@router.get("/messages/{message_id}")
async def message_page(request: Request, message_id: str, actor: Actor = Depends(web_actor)):
    message = await api.get_message(message_id, request, actor)
    figures = await api.figures(request, message_id)
    return render(request, "message.html", m=message, reach=figures.reach.model_dump(mode="json"),
                  timeline=figures.timeline.model_dump(mode="json"), actor=actor,
                  can_publish=role_allows(actor.role, Role.publisher), State=State)


@router.get("/messages/{message_id}/edit")
async def edit_page(request: Request, message_id: str, actor: Actor = Depends(web_actor)):
    allowed(request, Role.editor)
    row = await in_session(request.app.state.engine, lambda s: s.get(Message, message_id))
    if row is None:
        raise HTTPException(404, detail="no such message")
    return await compose_page(request, actor, as_form(row), editing=message_id)


@router.post("/messages/{message_id}/edit")
async def edit(request: Request, message_id: str, actor: Actor = Depends(web_actor)):
    allowed(request, Role.editor)
    form = await request.form()
    try:
        patch = MessagePatch.model_validate(draft_fields(form))
        await api.edit_draft(message_id, patch, request, actor)
    except (ValidationError, ValueError, HTTPException) as exc:
        code, reasons = refusal(exc)
        return await compose_page(request, actor, dict(form), code, editing=message_id, errors=reasons)
    return RedirectResponse(message_path(request, message_id), status_code=303)


ACTIONS = {"approve": api.approve, "publish": api.publish_approved, "withdraw": api.withdraw_message}


@router.post("/messages/{message_id}/{action}")
async def act(request: Request, message_id: str, action: str, actor: Actor = Depends(web_actor)):
    """Approve, publish, withdraw: a refused move (409: from which state to
    which) is the error page, naming it."""
    if action not in ACTIONS:
        raise HTTPException(404, detail=f"action: one of {', '.join(ACTIONS)}")
    allowed(request, Role.publisher)
    await ACTIONS[action](message_id, request, actor)
    return RedirectResponse(message_path(request, message_id), status_code=303)


class MeasureIn(BaseModel):
    text: str = Field(default="", max_length=5000)
    link: str | None = Field(default=None, max_length=2000)
    body: str = Field(default="", max_length=50_000)


@router.post("/measure")
async def measure_post(body: MeasureIn, request: Request, _actor: Actor = Depends(web_actor)) -> dict:
    """compose.js's counters and preview: the post as it goes out, its
    length as each network counts it, the body as volunteers see it."""
    return {**measure(body.text, body.link or None, limits(request)), "body_html": preview_html(body.body)}
