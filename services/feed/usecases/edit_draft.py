"""An editor edits a draft; editing an approved message takes it back to
draft, and its approval with it (a publisher approves what they read)."""

from __future__ import annotations

from pydantic import ValidationError
from sqlalchemy.engine import Engine

from services.feed.domain import Action, Actor, MessageDraft, MessagePatch, State
from services.feed.errors import Invalid
from services.feed.store import Message
from services.feed.usecases.create_draft import Limits, check, columns
from services.feed.usecases.moves import movable, move_or_conflict


def as_draft(m: Message) -> dict:
    return dict(title=m.title, body=m.body, link=m.link, interests=m.interests, regions=m.regions,
                locales=m.locales, priority=m.priority, publish_at=m.publish_at, expires_at=m.expires_at,
                variants=m.variants)


async def edit_draft(engine: Engine, message_id: str, patch: MessagePatch, actor: Actor, limits: Limits) -> None:
    m, target = await movable(engine, message_id, Action.edit)
    changes = patch.model_dump(exclude_unset=True)
    try:
        draft = MessageDraft.model_validate({**as_draft(m), **changes})
    except ValidationError as exc:
        raise Invalid(exc.errors(include_url=False, include_input=False)) from exc
    await check(engine, draft, limits)
    values = columns(draft)
    if target is State.draft and m.state != State.draft:
        values |= {"approved_by": None, "approved_at": None}
    await move_or_conflict(engine, m, target, actor, Action.edit, audit={"fields": sorted(changes)}, **values)
