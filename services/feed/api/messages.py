"""Campaign messages through their lifecycle: an editor drafts, a
publisher approves, publishes (now, or at the embargo) and withdraws; staff
see how far each went."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import TypeVar

from fastapi import APIRouter, Depends, Header, Query, Request, status
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from services.feed import content
from services.feed.api.deps import (
    conflict,
    engine,
    invalid,
    limits,
    not_found,
    refused,
    require_role,
    settings,
    unavailable,
)
from services.feed.domain import (
    Action,
    Actor,
    MessageDraft,
    MessagePatch,
    MessageStats,
    Reach,
    Role,
    StaffReport,
    State,
    Timeline,
    TransitionError,
    message_problems,
    next_state,
)
from services.feed.publishing import NotFound, Refused, Unavailable, audit_row, move, publish, withdraw
from services.feed.reporting import displayed, report
from services.feed.store import Message, current_taxonomy
from shared.db import in_session
from shared.events import Variants, new_id, utcnow

T = TypeVar("T")

drafts = APIRouter(prefix="/drafts", tags=["messages"])
router = APIRouter(prefix="/messages", tags=["messages"])


class MessageOut(BaseModel):
    id: str
    state: State
    title: str
    body: str
    body_html: str
    link: str | None
    interests: list[str]
    regions: list[str]
    locales: list[str]
    priority: int
    variants: Variants
    short_post: str | None
    publish_at: datetime | None
    expires_at: datetime | None
    created_at: datetime
    created_by: str | None
    updated_at: datetime
    approved_at: datetime | None
    approved_by: str | None
    published_at: datetime | None
    withdrawn_at: datetime | None
    withdrawn_reason: str | None
    stats: MessageStats = Field(
        description="headline figures, the same k-anonymous cells as GET /messages/{id}/reach: "
        "hidden under k volunteers, moving only when k more contributed")


def staff_figures(request: Request, session: Session, m: Message) -> StaffReport:
    """The only way to a staff figure (see domain.staff_report)."""
    s = settings(request)
    return report(session, m, s.k_anonymity, s.reach_settle_seconds)


def to_out(request: Request, session: Session, m: Message, *, listed: bool = False) -> MessageOut:
    """``listed``: a row of the message list, with the figures as last shown
    (reading every message's facts would make the list slow)."""
    variants = Variants.model_validate(m.variants)
    return MessageOut(
        id=m.id, state=State(m.state), title=m.title, body=m.body,
        body_html=m.body_html or content.render_markdown(m.body), link=m.link, interests=m.interests,
        regions=m.regions, locales=m.locales, priority=m.priority, variants=variants,
        short_post=content.short_post(variants.short.text, m.link) if variants.short else None,
        publish_at=m.publish_at, expires_at=m.expires_at, created_at=m.created_at, created_by=m.created_by,
        updated_at=m.updated_at, approved_at=m.approved_at, approved_by=m.approved_by,
        published_at=m.published_at, withdrawn_at=m.withdrawn_at, withdrawn_reason=m.withdrawn_reason,
        stats=(displayed(session, m, settings(request).k_anonymity) if listed
               else staff_figures(request, session, m)).stats,
    )


async def out(request: Request, message_id: str, actor: Actor) -> MessageOut:
    def load(session: Session) -> MessageOut | None:
        m = session.get(Message, message_id)
        return to_out(request, session, m) if m else None

    found = await in_session(engine(request), load)
    if found is None:
        raise not_found("message")
    return found


async def check(request: Request, draft: MessageDraft) -> None:
    """The rules beyond the schema, or a 422 naming each field at fault."""
    taxonomy = await in_session(engine(request), current_taxonomy)
    names = frozenset(t["name"] for t in taxonomy.terms) if taxonomy is not None else None
    if problems := message_problems(draft, taxonomy=names, limits=limits(request), now=utcnow()):
        raise refused(problems)


def columns(draft: MessageDraft) -> dict:
    return dict(
        title=draft.title, body=draft.body, body_html=content.render_markdown(draft.body), link=draft.link,
        interests=list(draft.normalized_interests()), regions=sorted(set(draft.regions)),
        locales=sorted(set(draft.locales)), priority=draft.priority, variants=draft.variants.model_dump(mode="json"),
        publish_at=draft.publish_at, expires_at=draft.expires_at,
    )


def as_draft(m: Message) -> dict:
    return dict(title=m.title, body=m.body, link=m.link, interests=m.interests, regions=m.regions,
                locales=m.locales, priority=m.priority, publish_at=m.publish_at, expires_at=m.expires_at,
                variants=m.variants)


async def by_key(request: Request, key: str | None) -> Message | None:
    if key is None:
        return None
    return await in_session(engine(request), lambda s: s.exec(
        select(Message).where(Message.idempotency_key == key)).first())


async def store_new(request: Request, draft: MessageDraft, actor: Actor, key: str | None, *,
                    approved: bool) -> Message:
    """Store a new message, or find the one a retry with the same
    ``Idempotency-Key`` stored (concurrent retries included)."""

    def by_key(session: Session) -> Message | None:
        if key is None:
            return None
        return session.exec(select(Message).where(Message.idempotency_key == key)).first()

    def save(session: Session) -> Message:
        if found := by_key(session):
            return found
        now = utcnow()
        state = State.approved if approved else State.draft
        message = Message(id=new_id(), **columns(draft), state=state.value, idempotency_key=key,
                          created_by=actor.id, created_at=now, updated_at=now,
                          approved_by=actor.id if approved else None, approved_at=now if approved else None)
        session.add(message)
        session.add(audit_row(actor, "message.create", f"message:{message.id}", state=state.value,
                              title=draft.title))
        try:
            session.commit()
        except IntegrityError:  # a concurrent retry with the same key won
            session.rollback()
            return by_key(session)
        return message

    return await in_session(engine(request), save)


async def acting(work: Awaitable[T], *, retry_hint: str = "try again") -> T:
    """Lifecycle outcomes as HTTP: 404, 409 (from which state to which),
    422 (a rule), 503 (NATS did not take the event)."""
    try:
        return await work
    except NotFound as exc:
        raise not_found("message") from exc
    except TransitionError as exc:
        raise conflict(exc) from exc
    except Refused as exc:
        raise refused(exc.problems) from exc
    except Unavailable as exc:
        raise unavailable(f"NATS did not take the event ({exc}): nothing was published; {retry_hint}") from exc


# -- drafts --------------------------------------------------------------------------------------


@drafts.post("", status_code=status.HTTP_201_CREATED, summary="Write a draft (editor)")
async def create_draft(
    draft: MessageDraft,
    request: Request,
    actor: Actor = Depends(require_role(Role.editor)),
    idempotency_key: str | None = Header(default=None, max_length=200),
) -> MessageOut:
    if (found := await by_key(request, idempotency_key)) is None:
        await check(request, draft)
    message = found or await store_new(request, draft, actor, idempotency_key, approved=False)
    return await out(request, message.id, actor)


@drafts.patch("/{message_id}", summary="Edit a draft (editor); an approved one goes back to draft")
async def edit_draft(message_id: str, patch: MessagePatch, request: Request,
                     actor: Actor = Depends(require_role(Role.editor))) -> MessageOut:
    m, target = await movable(request, message_id, Action.edit)
    changes = patch.model_dump(exclude_unset=True)
    try:
        draft = MessageDraft.model_validate({**as_draft(m), **changes})
    except ValidationError as exc:
        raise invalid(exc) from exc
    await check(request, draft)
    values = columns(draft)
    if target is State.draft and m.state != State.draft:
        values |= {"approved_by": None, "approved_at": None}
    await moved(request, m, target, actor, Action.edit, audit={"fields": sorted(changes)}, **values)
    return await out(request, message_id, actor)


async def movable(request: Request, message_id: str, action: Action) -> tuple[Message, State]:
    """The message and the state ``action`` takes it to: 404 or 409 otherwise."""
    m = await in_session(engine(request), lambda s: s.get(Message, message_id))
    if m is None:
        raise not_found("message")
    try:
        return m, next_state(m.state, action)
    except TransitionError as exc:
        raise conflict(exc) from exc


async def moved(request: Request, m: Message, target: State, actor: Actor, action: Action, **kwargs: object) -> None:
    """Move ``m`` to ``target``, audited; 409 naming the state another
    request left it in if it moved first."""
    if not await move(engine(request), m, target, actor, action, **kwargs):
        now = await in_session(engine(request), lambda s: s.get(Message, m.id))
        raise conflict(TransitionError(State(now.state), action))


# -- messages --------------------------------------------------------------------------------------


@router.post("", status_code=status.HTTP_201_CREATED, summary="Write and publish a message in one step (publisher)")
async def publish_message(
    draft: MessageDraft,
    request: Request,
    actor: Actor = Depends(require_role(Role.publisher)),
    idempotency_key: str | None = Header(default=None, max_length=200),
) -> MessageOut:
    """Store the message approved, then publish it (or schedule it, with a
    ``publish_at`` ahead). With an ``Idempotency-Key`` a retried request
    returns the same message; one stored but not yet published (NATS was
    down) is published on retry."""
    if (found := await by_key(request, idempotency_key)) is None:
        await check(request, draft)  # a retry is not judged again: it is the message it was
    message = found or await store_new(request, draft, actor, idempotency_key, approved=True)
    await acting(publish(engine(request), request.app.state.bus, message.id, actor, tolerate_done=True),
                 retry_hint=f"message {message.id} is saved; retry with the same Idempotency-Key")
    return await out(request, message.id, actor)


@router.get("", summary="Messages, newest first")
async def list_messages(
    request: Request,
    actor: Actor = Depends(require_role(Role.editor)),
    limit: int = Query(default=50, ge=1, le=200),
    state: State | None = Query(default=None),
) -> list[MessageOut]:
    def load(session: Session) -> list[MessageOut]:
        q = select(Message)
        if state is not None:
            q = q.where(Message.state == state.value)
        rows = list(session.exec(q.order_by(Message.created_at.desc(), Message.id).limit(limit)))
        return [to_out(request, session, m, listed=True) for m in rows]

    return await in_session(engine(request), load)


@router.get("/{message_id}", summary="One message")
async def get_message(message_id: str, request: Request,
                      actor: Actor = Depends(require_role(Role.editor))) -> MessageOut:
    return await out(request, message_id, actor)


async def figures(request: Request, message_id: str) -> StaffReport:
    def load(session: Session) -> StaffReport | None:
        m = session.get(Message, message_id)
        return staff_figures(request, session, m) if m else None

    found = await in_session(engine(request), load)
    if found is None:
        raise not_found("message")
    return found


@router.get("/{message_id}/reach", summary="How far a message went: aggregates over k volunteers at least")
async def get_reach(message_id: str, request: Request,
                    _actor: Actor = Depends(require_role(Role.editor))) -> Reach:
    """Volunteers suggested, their audience, relays, and per channel what
    the jobs became (reached, opted out, bounced, dropped, failed), with a
    breakdown per interest and region of the message. A figure is null with
    ``suppressed: true`` until ``MAILLAGE_FEED_K_ANONYMITY`` (5) distinct
    volunteers contributed to it, and once shown it moves only when k more
    volunteers changed it, so no two reports differ by one volunteer's
    relay; a figure that could be read by subtraction is hidden too."""
    return (await figures(request, message_id)).reach


@router.get("/{message_id}/reach/timeline", summary="Recipients reached over time, per channel, k-anonymous")
async def get_reach_timeline(message_id: str, request: Request,
                             _actor: Actor = Depends(require_role(Role.editor))) -> Timeline:
    """Cumulative recipients reached per channel: the values the reach
    showed, each at the time it was taken (at most 60 points)."""
    return (await figures(request, message_id)).timeline


@router.post("/{message_id}/approve", summary="Approve a draft (publisher)")
async def approve(message_id: str, request: Request,
                  actor: Actor = Depends(require_role(Role.publisher))) -> MessageOut:
    m, target = await movable(request, message_id, Action.approve)
    await moved(request, m, target, actor, Action.approve, approved_by=actor.id, approved_at=utcnow())
    return await out(request, message_id, actor)


@router.post("/{message_id}/publish", summary="Publish an approved message (publisher): now, or at its publish_at")
async def publish_approved(message_id: str, request: Request,
                           actor: Actor = Depends(require_role(Role.publisher))) -> MessageOut:
    await acting(publish(engine(request), request.app.state.bus, message_id, actor))
    return await out(request, message_id, actor)


@router.post("/{message_id}/withdraw", summary="Withdraw a message (publisher): it leaves every inbox")
async def withdraw_message(message_id: str, request: Request,
                           actor: Actor = Depends(require_role(Role.publisher))) -> MessageOut:
    await acting(withdraw(engine(request), request.app.state.bus, message_id, actor))
    return await out(request, message_id, actor)
