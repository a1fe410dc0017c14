"""An editor writes a draft; the one-step publish (usecases/publish.py)
writes the same way, approved. A retry with the same ``Idempotency-Key``
finds the message the first attempt stored, concurrent retries included."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from services.feed import content
from services.feed.domain import Actor, MessageDraft, State, message_problems
from services.feed.errors import Refused
from services.feed.store import Message, current_taxonomy
from services.feed.usecases.audit import audit_row
from shared.db import in_session
from shared.events import new_id, utcnow

Limits = tuple[content.ChannelLimit, ...]


def columns(draft: MessageDraft) -> dict:
    return dict(
        title=draft.title, body=draft.body, body_html=content.render_markdown(draft.body), link=draft.link,
        interests=list(draft.normalized_interests()), regions=sorted(set(draft.regions)),
        locales=sorted(set(draft.locales)), priority=draft.priority, variants=draft.variants.model_dump(mode="json"),
        publish_at=draft.publish_at, expires_at=draft.expires_at,
    )


async def check(engine: Engine, draft: MessageDraft, limits: Limits) -> None:
    """The rules beyond the schema: Refused naming each field at fault."""
    taxonomy = await in_session(engine, current_taxonomy)
    names = frozenset(t["name"] for t in taxonomy.terms) if taxonomy is not None else None
    if problems := message_problems(draft, taxonomy=names, limits=limits, now=utcnow()):
        raise Refused(problems)


def _by_key(session: Session, key: str | None) -> Message | None:
    if key is None:
        return None
    return session.exec(select(Message).where(Message.idempotency_key == key)).first()


def _store_new(session: Session, draft: MessageDraft, actor: Actor, key: str | None, approved: bool) -> Message:
    if found := _by_key(session, key):
        return found
    now = utcnow()
    state = State.approved if approved else State.draft
    message = Message(id=new_id(), **columns(draft), state=state.value, idempotency_key=key,
                      created_by=actor.id, created_at=now, updated_at=now,
                      approved_by=actor.id if approved else None, approved_at=now if approved else None)
    session.add(message)
    session.add(audit_row(actor, "message.create", f"message:{message.id}", state=state.value, title=draft.title))
    try:
        session.commit()
    except IntegrityError:  # a concurrent retry with the same key won
        session.rollback()
        found = _by_key(session, key)
        if found is None:  # another constraint refused the row, not a twin
            raise
        return found
    return message


async def write(engine: Engine, draft: MessageDraft, actor: Actor, key: str | None, limits: Limits, *,
                approved: bool) -> Message:
    """The message ``key`` stored already, or a new one (draft, or approved)."""
    found = await in_session(engine, lambda s: _by_key(s, key))
    if found is not None:
        return found  # a retry is not judged again: it is the message it was
    await check(engine, draft, limits)
    return await in_session(engine, lambda s: _store_new(s, draft, actor, key, approved))


async def create_draft(engine: Engine, draft: MessageDraft, actor: Actor, key: str | None,
                       limits: Limits) -> Message:
    return await write(engine, draft, actor, key, limits, approved=False)
