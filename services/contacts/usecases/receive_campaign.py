"""What feed announces reaches contacts: a message (kept, to relay it), a
withdrawal (it leaves every inbox and can no longer be relayed), the
taxonomy (the words a volunteer tags with)."""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.contacts.store import CampaignMessage, TaxonomyTerm
from services.contacts.usecases._unit import unit
from shared.events import MessagePublished, MessageWithdrawn, Taxonomy


async def keep_message(engine: Engine, event: MessagePublished) -> None:
    await unit(engine, lambda s: s.merge(CampaignMessage(
        message_id=event.message_id,
        title=event.title,
        body=event.body,
        interests=list(event.interests),
        email_subject=event.variants.email.subject,
        email_body=event.variants.email.body,
        short_text=event.variants.short.text if event.variants.short else None,
        link=event.link,
        priority=event.priority,
        expires_at=event.expires_at,
    )))


async def withdraw_message(engine: Engine, event: MessageWithdrawn) -> None:
    def save(session: Session) -> None:
        message = session.get(CampaignMessage, event.message_id)
        if message is not None and message.withdrawn_at is None:
            message.withdrawn_at = event.occurred_at
            session.add(message)

    await unit(engine, save)


async def keep_taxonomy(engine: Engine, event: Taxonomy) -> None:
    def save(session: Session) -> None:
        session.exec(delete(TaxonomyTerm))
        session.add_all(TaxonomyTerm(name=t.name, label_fr=t.label_fr, label_en=t.label_en) for t in event.terms)

    await unit(engine, save)
