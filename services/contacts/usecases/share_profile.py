"""The volunteer chooses which interests' counts the campaign sees (the
opt-in profile) and which are relayed without a click; the profile is
published again."""

from __future__ import annotations

from sqlmodel import Session

from services.contacts.relay import auto as auto_relay
from services.contacts import book as book_ops
from services.contacts.errors import Invalid
from services.contacts.store import Volunteer
from services.contacts.usecases._profile import current, republish
from services.contacts.usecases._unit import Contacts, unit
from shared.events import InterestProfile


async def my_profile(ctx: Contacts, volunteer_id: str) -> tuple[InterestProfile, list[str]]:
    """What the campaign sees, and the auto-relay choice still in force (never published)."""

    def load(session: Session) -> tuple[InterestProfile, list[str]]:
        return current(session, volunteer_id), sorted(auto_relay.effective(session.get_one(Volunteer, volunteer_id)))

    return await unit(ctx.engine, load)


async def share_profile(ctx: Contacts, volunteer_id: str, shared_interests: list[str] | None,
                        auto_relay_interests: list[str] | None) -> tuple[InterestProfile, list[str]]:
    """``auto_relay_interests`` None keeps the choice, minus what is no longer shared."""

    def save(session: Session) -> None:
        row = session.get_one(Volunteer, volunteer_id)
        shared = sorted(set(shared_interests)) if shared_interests is not None else None
        if auto_relay_interests is not None:
            auto = set(auto_relay_interests)
            in_force = None if shared is None else set(shared)
            if problem := auto_relay.choice_problem(auto, in_force, book_ops.taxonomy(session)):
                raise Invalid.field("body", "auto_relay_interests", problem)
        else:
            kept = set(row.auto_relay_interests or ())
            auto = kept if shared is None else kept & set(shared)
        row.shared_interests = shared
        row.auto_relay_interests = sorted(auto) or None
        session.add(row)

    await unit(ctx.engine, save)
    profile = await republish(ctx, volunteer_id)
    row = await unit(ctx.engine, lambda s: s.get_one(Volunteer, volunteer_id))
    return profile, sorted(auto_relay.effective(row))
