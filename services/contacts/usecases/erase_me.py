"""The volunteer erases their whole book and account: the book's key
first (crypto-shredding), then its rows; an empty profile is published so
no suggestion targets it again."""

from __future__ import annotations

from sqlalchemy import delete, update
from sqlmodel import Session, col

from services.contacts import book as book_ops
from services.contacts import outbound
from services.contacts.store import SignInLink, Volunteer
from services.contacts.usecases._unit import Contacts, unit
from shared.events import InterestProfile


async def erase_me(ctx: Contacts, volunteer_id: str) -> None:
    def erase(session: Session) -> None:
        book_ops.erase_volunteer(session, volunteer_id)
        session.exec(delete(SignInLink).where(col(SignInLink.volunteer_id) == volunteer_id))
        # the token is gone with the key; the epoch ends every web session too
        session.exec(update(Volunteer).where(col(Volunteer.id) == volunteer_id)
                     .values(session_epoch=Volunteer.session_epoch + 1))

    await unit(ctx.engine, erase)
    await outbound.profile(ctx.bus, InterestProfile(volunteer_id=volunteer_id, audience={}))
