"""The contact book's rules, free of I/O: consent, the opt-in profile, who
a relay reaches, and the stable ids that make a relay idempotent."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from shared.events import Channel, InterestName


class Consent(StrEnum):
    unknown = "unknown"
    invited = "invited"
    confirmed = "confirmed"
    withdrawn = "withdrawn"


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    interests: list[InterestName] = Field(default_factory=list, max_length=50)
    consent: Consent = Consent.unknown


def normalize_email(email: str) -> str:
    local, _, domain = email.strip().rpartition("@")
    return f"{local}@{domain.lower()}".lower()


@dataclass(frozen=True)
class ContactView:
    """What the rules need to know of a contact."""

    contact_id: str
    interests: frozenset[str]
    consent: Consent


def interest_profile(
    contacts: Iterable[ContactView], shared_interests: set[str] | None
) -> dict[str, dict[Channel, int]]:
    """Per shared interest, how many confirmed contacts the volunteer has.
    ``shared_interests`` None means the volunteer shares every interest."""
    counts: Counter[str] = Counter()
    for c in contacts:
        if c.consent is Consent.confirmed:
            counts.update(c.interests)
    return {
        interest: {Channel.email: n}
        for interest, n in sorted(counts.items())
        if shared_interests is None or interest in shared_interests
    }


def relay_recipients(
    contacts: Iterable[ContactView], matched_interests: Iterable[str]
) -> list[ContactView]:
    """Confirmed contacts with at least one matched interest; with no
    matched interest (a broad message), every confirmed contact."""
    wanted = set(matched_interests)
    return [
        c
        for c in contacts
        if c.consent is Consent.confirmed and (not wanted or c.interests & wanted)
    ]


def stable_id(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:32]


def relay_id(suggestion_id: str) -> str:
    """One relay per suggestion: a second click is the same relay."""
    return stable_id("relay", suggestion_id)


def job_id(relay: str, contact_id: str, channel: Channel) -> str:
    return stable_id("job", relay, contact_id, channel.value)
