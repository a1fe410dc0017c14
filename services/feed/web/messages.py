"""Messages in the console: the list, compose (draft or publish, now or at
a time), one message with its actions, and the live counters' endpoint."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, Field, ValidationError

from services.feed.api import deps
from services.feed.api.deps import ANSWERS, BusDep, EngineDep, LimitsDep, SettingsDep
from services.feed.domain import Action, Actor, MessageDraft, MessagePatch, Role, State, role_allows
from services.feed.usecases.approve import approve
from services.feed.usecases.create_draft import create_draft
from services.feed.usecases.edit_draft import edit_draft
from services.feed.usecases.publish import publish_approved, write_and_publish
from services.feed.usecases.read_messages import list_messages, read_figures, read_message, stored_message
from services.feed.usecases.taxonomy import read_taxonomy
from services.feed.usecases.withdraw import withdraw
from services.feed.web.auth import allowed, web_actor
from services.feed.web.compose import as_form, draft_fields, measure, preview_html
from shared.web.errors import answer
from shared.web.forms import field
from shared.web.pages import problems, render, site_of
from shared.web.session import csrf_protect

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(csrf_protect)])


# What a form can be refused with: the use cases' errors (answered as the
# API would), the schema's, and ours reading the form (they name the field).
REFUSALS: tuple[type[Exception], ...] = (*ANSWERS, ValidationError, ValueError)


def refusal(exc: Exception) -> tuple[int, list[str]]:
    """A refused form: its status and the sentences naming each field."""
    if isinstance(exc, tuple(ANSWERS)):
        exc = answer(exc, ANSWERS)
    if isinstance(exc, (HTTPException, ValidationError)):
        return getattr(exc, "status_code", 422), problems(exc)
    return 422, [str(exc)]


def message_path(request: Request, message_id: str) -> str:
    return f"{site_of(request).prefix}/messages/{message_id}"


@router.get("/messages")
async def list_page(request: Request, engine: EngineDep, settings: SettingsDep, actor: Actor = Depends(web_actor)):
    rows = await list_messages(engine, settings, limit=100)
    return render(request, "messages.html", messages=rows, actor=actor, k=settings.k_anonymity)


async def compose_page(request: Request, actor: Actor, form: dict | None = None, status_code: int = 200,
                       editing: str | None = None, **extra):
    taxonomy = await read_taxonomy(deps.engine(request))
    return render(request, "compose.html", status_code, form=form or {}, taxonomy=taxonomy.terms,
                  can_publish=role_allows(actor.role, Role.publisher), editing=editing,
                  idempotency_key=secrets.token_urlsafe(16), limits=deps.limits(request), **extra)


@router.get("/compose")
async def compose(request: Request, actor: Actor = Depends(web_actor)):
    allowed(request, Role.editor)
    return await compose_page(request, actor)


@router.post("/compose")
async def save(request: Request, engine: EngineDep, bus: BusDep, limits: LimitsDep,
               actor: Actor = Depends(web_actor)):
    """"draft" stores a draft (editor); "publish" writes and publishes in one
    step (publisher), or schedules it when publish_at is ahead."""
    form = await request.form()
    publishing = form.get("action") == "publish"
    allowed(request, Role.publisher if publishing else Role.editor)
    key = field(form, "idempotency_key") or None  # a double submit makes one message
    try:
        draft = MessageDraft.model_validate(draft_fields(form))
        if publishing:
            made = await write_and_publish(engine, bus, draft, actor, key, limits)
        else:
            made = await create_draft(engine, draft, actor, key, limits)
    except REFUSALS as exc:
        code, reasons = refusal(exc)
        return await compose_page(request, actor, dict(form), code, errors=reasons)
    return RedirectResponse(message_path(request, made.id), status_code=303)


@router.get("/messages/{message_id}")
async def message_page(request: Request, message_id: str, engine: EngineDep, settings: SettingsDep,
                       actor: Actor = Depends(web_actor)):
    message = await read_message(engine, settings, message_id)
    figures = await read_figures(engine, settings, message_id)
    return render(request, "message.html", m=message, reach=figures.reach.model_dump(mode="json"),
                  timeline=figures.timeline.model_dump(mode="json"), actor=actor,
                  can_publish=role_allows(actor.role, Role.publisher), State=State)


@router.get("/messages/{message_id}/edit")
async def edit_page(request: Request, message_id: str, engine: EngineDep, actor: Actor = Depends(web_actor)):
    allowed(request, Role.editor)
    return await compose_page(request, actor, as_form(await stored_message(engine, message_id)), editing=message_id)


@router.post("/messages/{message_id}/edit")
async def edit(request: Request, message_id: str, engine: EngineDep, limits: LimitsDep,
               actor: Actor = Depends(web_actor)):
    allowed(request, Role.editor)
    form = await request.form()
    try:
        patch = MessagePatch.model_validate(draft_fields(form))
        await edit_draft(engine, message_id, patch, actor, limits)
    except REFUSALS as exc:
        code, reasons = refusal(exc)
        return await compose_page(request, actor, dict(form), code, editing=message_id, errors=reasons)
    return RedirectResponse(message_path(request, message_id), status_code=303)


ACTIONS = {
    Action.approve: lambda engine, _bus, message_id, actor: approve(engine, message_id, actor),
    Action.publish: publish_approved,
    Action.withdraw: withdraw,
}


@router.post("/messages/{message_id}/{action}")
async def act(request: Request, message_id: str, action: str, engine: EngineDep, bus: BusDep,
              actor: Actor = Depends(web_actor)):
    """Approve, publish, withdraw: a refused move (409: from which state to
    which) is the error page, naming it."""
    if action not in ACTIONS:
        raise HTTPException(404, detail=f"action: one of {', '.join(ACTIONS)}")
    allowed(request, Role.publisher)
    await ACTIONS[Action(action)](engine, bus, message_id, actor)
    return RedirectResponse(message_path(request, message_id), status_code=303)


class MeasureIn(BaseModel):
    text: str = Field(default="", max_length=5000)
    link: str | None = Field(default=None, max_length=2000)
    body: str = Field(default="", max_length=50_000)


@router.post("/measure")
async def measure_post(body: MeasureIn, limits: LimitsDep, _actor: Actor = Depends(web_actor)) -> dict:
    """compose.js's counters and preview: the post as it goes out, its
    length as each network counts it, the body as volunteers see it."""
    return {**measure(body.text, body.link or None, limits), "body_html": preview_html(body.body)}
