"""Feed's HTTP routes for staff."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from services.feed.domain import MessageDraft, MessageStats
from services.feed.store import Message, message_stats
from shared.auth import Authenticator, Principal, require, same_token
from shared.catalogue import MESSAGE_PUBLISHED
from shared.db import in_session, mark_once
from shared.events import MessagePublished, Variants, new_id


class MessageOut(BaseModel):
    id: str
    title: str
    interests: list[str]
    variants: Variants
    created_at: datetime
    published_at: datetime | None
    stats: MessageStats


STAFF = "staff"


def staff_authenticator(staff_token_hash: str) -> Authenticator:
    async def authenticate(token: str) -> Principal | None:
        return Principal(STAFF) if same_token(token, staff_token_hash) else None

    return authenticate


router = APIRouter(prefix="/messages", tags=["messages"], dependencies=[Depends(require(STAFF))])


def to_out(session: Session, m: Message) -> MessageOut:
    return MessageOut(
        id=m.id,
        title=m.title,
        interests=m.interests,
        variants=Variants.model_validate(m.variants),
        created_at=m.created_at,
        published_at=m.published_at,
        stats=message_stats(session, m.id),
    )


@router.post("", status_code=status.HTTP_201_CREATED, summary="Publish a campaign message")
async def publish_message(
    draft: MessageDraft,
    request: Request,
    idempotency_key: str | None = Header(default=None, max_length=200),
) -> MessageOut:
    """Store the message, then publish it to JetStream. With an
    ``Idempotency-Key`` a retried request returns the same message; a message
    stored but not yet published (NATS was down) is published on retry."""
    engine, bus = request.app.state.engine, request.app.state.bus

    def by_key(session: Session) -> Message | None:
        if idempotency_key is None:
            return None
        return session.exec(select(Message).where(Message.idempotency_key == idempotency_key)).first()

    def store(session: Session) -> Message:
        if found := by_key(session):
            return found
        message = Message(
            id=new_id(),
            title=draft.title,
            body=draft.body,
            interests=list(draft.normalized_interests()),
            variants=draft.variants.model_dump(mode="json"),
            idempotency_key=idempotency_key,
        )
        session.add(message)
        try:
            session.commit()
        except IntegrityError:  # a concurrent retry with the same key won
            session.rollback()
            return by_key(session)
        return message

    message = await in_session(engine, store)
    if message.published_at is None:
        event = MessagePublished(
            message_id=message.id,
            title=message.title,
            body=message.body,
            interests=tuple(message.interests),
            variants=Variants.model_validate(message.variants),
        )
        try:
            await bus.publish(MESSAGE_PUBLISHED, event, msg_id=message.id)
        except Exception as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                detail=f"message {message.id} is saved but not yet published "
                f"({type(exc).__name__}); retry with the same Idempotency-Key",
            ) from exc

        if await in_session(engine, lambda s: mark_once(s, Message, message.id)):
            request.app.state.published_counter.inc()
        message = await in_session(engine, lambda s: s.get(Message, message.id))
    return await in_session(engine, lambda s: to_out(s, message))


@router.get("", summary="Messages with their aggregates, newest first")
async def list_messages(request: Request, limit: int = 50) -> list[MessageOut]:
    limit = max(1, min(limit, 200))

    def load(session: Session) -> list[MessageOut]:
        rows = session.exec(select(Message).order_by(Message.created_at.desc()).limit(limit))
        return [to_out(session, m) for m in rows]

    return await in_session(request.app.state.engine, load)


@router.get("/{message_id}", summary="One message with its aggregates")
async def get_message(message_id: str, request: Request) -> MessageOut:
    def load(session: Session) -> MessageOut | None:
        m = session.get(Message, message_id)
        return to_out(session, m) if m else None

    out = await in_session(request.app.state.engine, load)
    if out is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no message {message_id}")
    return out
