"""A shared step: the profile a change to a book implies, computed and
published (what the matcher reads: counts only)."""

from __future__ import annotations

from sqlmodel import Session

from services.contacts import book as book_ops
from services.contacts import domain, outbound
from services.contacts.store import Volunteer
from services.contacts.usecases._unit import Contacts, unit
from shared.events import InterestProfile


def current(session: Session, volunteer_id: str) -> InterestProfile:
    """Counts of confirmed contacts per shared interest: all that leaves."""
    vol = session.get_one(Volunteer, volunteer_id)
    shared = set(vol.shared_interests) if vol.shared_interests is not None else None
    views = book_ops.views(session, volunteer_id)
    regions, locales = domain.place_profile(views)
    return InterestProfile(volunteer_id=volunteer_id, audience=domain.interest_profile(views, shared),
                           regions=regions, locales=locales)


async def republish(ctx: Contacts, volunteer_id: str) -> InterestProfile:
    profile = await unit(ctx.engine, lambda s: current(s, volunteer_id))
    await outbound.profile(ctx.bus, profile)
    return profile
