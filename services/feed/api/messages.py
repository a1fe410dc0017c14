"""Campaign messages through their lifecycle: an editor drafts, a
publisher approves, publishes (now, or at the embargo) and withdraws; staff
see how far each went. Each route is one use case (services/feed/usecases);
their errors become HTTP answers in one place (deps.ANSWERS)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, status

from services.feed.api.deps import BusDep, Editor, EngineDep, LimitsDep, Publisher, SettingsDep
from services.feed.domain import MessageDraft, MessagePatch, Reach, State, Timeline
from services.feed.usecases.approve import approve
from services.feed.usecases.create_draft import create_draft
from services.feed.usecases.edit_draft import edit_draft
from services.feed.usecases.publish import publish_approved, write_and_publish
from services.feed.usecases.read_messages import MessageOut, list_messages, read_figures, read_message
from services.feed.usecases.withdraw import withdraw

drafts = APIRouter(prefix="/drafts", tags=["messages"])
router = APIRouter(prefix="/messages", tags=["messages"])
# Routes named where their use case took the function's name: ``name`` keeps
# the OpenAPI operationIds clients were generated from.

IdempotencyKey = Annotated[str | None, Header(max_length=200)]


# -- drafts --------------------------------------------------------------------------------------


@drafts.post("", status_code=status.HTTP_201_CREATED, name="create_draft", summary="Write a draft (editor)")
async def post_draft(draft: MessageDraft, engine: EngineDep, settings: SettingsDep, limits: LimitsDep,
                     actor: Editor, idempotency_key: IdempotencyKey = None) -> MessageOut:
    message = await create_draft(engine, draft, actor, idempotency_key, limits)
    return await read_message(engine, settings, message.id)


@drafts.patch("/{message_id}", name="edit_draft", summary="Edit a draft (editor); an approved one goes back to draft")
async def patch_draft(message_id: str, patch: MessagePatch, engine: EngineDep, settings: SettingsDep,
                      limits: LimitsDep, actor: Editor) -> MessageOut:
    await edit_draft(engine, message_id, patch, actor, limits)
    return await read_message(engine, settings, message_id)


# -- messages --------------------------------------------------------------------------------------


@router.post("", status_code=status.HTTP_201_CREATED, summary="Write and publish a message in one step (publisher)")
async def publish_message(draft: MessageDraft, engine: EngineDep, bus: BusDep, settings: SettingsDep,
                          limits: LimitsDep, actor: Publisher, idempotency_key: IdempotencyKey = None) -> MessageOut:
    """Store the message approved, then publish it (or schedule it, with a
    ``publish_at`` ahead). With an ``Idempotency-Key`` a retried request
    returns the same message; one stored but not yet published (NATS was
    down) is published on retry."""
    message = await write_and_publish(engine, bus, draft, actor, idempotency_key, limits)
    return await read_message(engine, settings, message.id)


@router.get("", name="list_messages", summary="Messages, newest first")
async def get_messages(
    engine: EngineDep,
    settings: SettingsDep,
    _actor: Editor,
    limit: int = Query(default=50, ge=1, le=200),
    state: State | None = Query(default=None),
) -> list[MessageOut]:
    return await list_messages(engine, settings, limit=limit, state=state)


@router.get("/{message_id}", summary="One message")
async def get_message(message_id: str, engine: EngineDep, settings: SettingsDep, _actor: Editor) -> MessageOut:
    return await read_message(engine, settings, message_id)


@router.get("/{message_id}/reach", summary="How far a message went: aggregates over k volunteers at least")
async def get_reach(message_id: str, engine: EngineDep, settings: SettingsDep, _actor: Editor) -> Reach:
    """Volunteers suggested, their audience, relays, and per channel what
    the jobs became (reached, opted out, bounced, dropped, failed), with a
    breakdown per interest and region of the message. A figure is null with
    ``suppressed: true`` until ``MAILLAGE_FEED_K_ANONYMITY`` (5) distinct
    volunteers contributed to it, and once shown it moves only when k more
    volunteers changed it, so no two reports differ by one volunteer's
    relay; a figure that could be read by subtraction is hidden too."""
    return (await read_figures(engine, settings, message_id)).reach


@router.get("/{message_id}/reach/timeline", summary="Recipients reached over time, per channel, k-anonymous")
async def get_reach_timeline(message_id: str, engine: EngineDep, settings: SettingsDep, _actor: Editor) -> Timeline:
    """Cumulative recipients reached per channel: the values the reach
    showed, each at the time it was taken (at most 60 points)."""
    return (await read_figures(engine, settings, message_id)).timeline


@router.post("/{message_id}/approve", name="approve", summary="Approve a draft (publisher)")
async def post_approve(message_id: str, engine: EngineDep, settings: SettingsDep, actor: Publisher) -> MessageOut:
    await approve(engine, message_id, actor)
    return await read_message(engine, settings, message_id)


@router.post("/{message_id}/publish", name="publish_approved",
             summary="Publish an approved message (publisher): now, or at its publish_at")
async def post_publish(message_id: str, engine: EngineDep, bus: BusDep, settings: SettingsDep,
                       actor: Publisher) -> MessageOut:
    await publish_approved(engine, bus, message_id, actor)
    return await read_message(engine, settings, message_id)


@router.post("/{message_id}/withdraw", name="withdraw_message",
             summary="Withdraw a message (publisher): it leaves every inbox")
async def post_withdraw(message_id: str, engine: EngineDep, bus: BusDep, settings: SettingsDep,
                        actor: Publisher) -> MessageOut:
    await withdraw(engine, bus, message_id, actor)
    return await read_message(engine, settings, message_id)
