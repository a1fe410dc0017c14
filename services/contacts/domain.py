"""The contact book's rules, free of I/O: what a contact is, consent and
its transitions, the opt-in profile, who a relay reaches, and the stable
ids that make a relay idempotent."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, field_validator

from services.contacts.importing.normalize import normalize_phone
from shared.events import Channel, InterestName
from shared.text import HeaderText, control_character

Phone = Annotated[str, AfterValidator(normalize_phone)]


class Consent(StrEnum):
    unknown = "unknown"
    invited = "invited"
    confirmed = "confirmed"
    withdrawn = "withdrawn"


class ConsentSource(StrEnum):
    volunteer = "volunteer"  # the volunteer attests, with a proof ("said yes at the market, 12/11")
    contact = "contact"  # the contact clicked confirm / refuse
    invitation = "invitation"  # an invitation was sent
    unsubscribe = "unsubscribe"  # one-click unsubscribe
    bounce = "bounce"  # the address does not exist


class ConsentRuleError(ValueError):
    pass


# What a volunteer is told when the campaign-wide rules stop an address: the
# same words whatever the cause (the person refused an invitation,
# unsubscribed, bounced, or was already invited from some book), because
# each cause is another person's action or another volunteer's, and the
# volunteer needs only to know that Maillage will not write there.
UNREACHABLE = "this address cannot be invited or reached through Maillage"


class AddressBlocked(ConsentRuleError):
    """A volunteer tried to confirm (or invite) an address the campaign-wide
    rules block. Only the person can lift it, through their own link."""

    def __init__(self) -> None:
        super().__init__(UNREACHABLE)


# Which sources may move a consent from one state to another. A withdrawal
# can only be undone by the contact themself.
_ALLOWED: dict[tuple[Consent, Consent], frozenset[ConsentSource]] = {
    (Consent.unknown, Consent.invited): frozenset({ConsentSource.invitation}),
    (Consent.unknown, Consent.confirmed): frozenset({ConsentSource.volunteer, ConsentSource.contact}),
    (Consent.invited, Consent.confirmed): frozenset({ConsentSource.volunteer, ConsentSource.contact}),
    (Consent.withdrawn, Consent.confirmed): frozenset({ConsentSource.contact}),
}


def consent_transition(current: Consent, target: Consent, source: ConsentSource, proof: str | None = None) -> Consent:
    """The new state, or a ConsentRuleError saying why not."""
    if target is Consent.withdrawn:
        return target  # anyone may stop messages, at any time
    if current is target:
        return current
    allowed = _ALLOWED.get((current, target))
    if allowed is None or source not in allowed:
        raise ConsentRuleError(
            f"consent cannot go from {current} to {target} by {source}"
            + (": only the contact can undo a withdrawal" if current is Consent.withdrawn else "")
        )
    if source is ConsentSource.volunteer and not (proof and proof.strip()):
        raise ConsentRuleError("proof: say how and when the contact agreed")
    return target


CONTACT_CHANNELS = (Channel.email,)  # channels a relay can reach one person on


class ContactFields(BaseModel):
    """A contact as the volunteer edits it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    # the name is the display name of the To: header of every email to them
    name: HeaderText = Field(min_length=1, max_length=200)
    emails: list[EmailStr] = Field(default_factory=list, max_length=10)
    phones: list[Phone] = Field(default_factory=list, max_length=10)
    handles: dict[str, str] = Field(default_factory=dict, max_length=10,
                                    description="network -> handle, e.g. mastodon: @ana@piaille.fr")
    locale: str | None = Field(default=None, max_length=16)
    commune: str | None = Field(default=None, max_length=100)
    region: str | None = Field(default=None, max_length=100)
    interests: list[InterestName] = Field(default_factory=list, max_length=50)
    tags: list[InterestName] = Field(default_factory=list, max_length=50)
    notes: str | None = Field(default=None, max_length=5000)



class ContactIn(ContactFields):
    """A new contact: the fields, and optionally the email consent the
    volunteer can vouch for."""

    consent: Consent = Consent.unknown
    consent_proof: str | None = Field(default=None, max_length=1000)


class ContactPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: HeaderText | None = Field(default=None, min_length=1, max_length=200)
    emails: list[EmailStr] | None = Field(default=None, max_length=10)
    phones: list[Phone] | None = Field(default=None, max_length=10)
    handles: dict[str, str] | None = Field(default=None, max_length=10)
    locale: str | None = Field(default=None, max_length=16)
    commune: str | None = Field(default=None, max_length=100)
    region: str | None = Field(default=None, max_length=100)
    interests: list[InterestName] | None = Field(default=None, max_length=50)
    tags: list[InterestName] | None = Field(default=None, max_length=50)
    notes: str | None = Field(default=None, max_length=5000)

    @field_validator("name", "emails", "phones", "handles", "interests", "tags", mode="before")
    @classmethod
    def _left_out_not_null(cls, value):
        # None is how "not sent" reads here; a null sent for a field that
        # cannot be empty would reach the book as None (a 500 found by the
        # schemathesis run): a 422 naming the field instead.
        if value is None:
            raise ValueError("leave it out to keep it; null is not a value here ([] or {} empties a list)")
        return value



def header_name(name: str) -> str:
    """A stored name as a job carries it to a mail header. Names are
    HeaderText now, but a book may hold one from before (a multi-line
    import cell), sealed with the volunteer's key, so no migration can read
    it: the job has it on one line, each control a space, as the email
    writer would show it, and the book keeps what the volunteer wrote (its
    next edit must fix it)."""
    if control_character(name) is None:
        return name
    return "".join(" " if control_character(c) else c for c in name).strip()


@dataclass(frozen=True)
class ContactView:
    """What the rules need to know of a contact."""

    contact_id: str
    interests: frozenset[str]
    consent: Consent
    region: str | None = None
    locale: str | None = None


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


def place_profile(contacts: Iterable[ContactView]) -> tuple[dict[str, int], dict[str, int]]:
    """How many confirmed contacts per region and per locale, for targeting."""
    confirmed = [c for c in contacts if c.consent is Consent.confirmed]
    regions = Counter(c.region for c in confirmed if c.region)
    locales = Counter(c.locale for c in confirmed if c.locale)
    return dict(sorted(regions.items())), dict(sorted(locales.items()))


def unknown_interests(words: Iterable[str], taxonomy: set[str]) -> list[str]:
    """Interests outside the campaign's taxonomy (none while it has none);
    ``local:<commune>`` words are always allowed."""
    if not taxonomy:
        return []
    return sorted({w for w in words if w not in taxonomy and not w.startswith("local:")})


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


class Skip(StrEnum):
    """Why a confirmed contact was not sent a relay, as the volunteer reads
    it. The campaign-wide causes (a refusal, an unsubscribe or a bounce in
    any book; the message already sent by another volunteer; the per-person
    cap, which counts other volunteers' sends) are one neutral reason: each
    would tell the volunteer what a person did elsewhere, or that this
    person sits in another volunteer's book, and the volunteer can act on
    none of it. A missing address is their own book's fact, so it is named."""

    unreachable = "unreachable"
    no_address = "no_address"


class Rule(StrEnum):
    """The campaign-wide rule that stopped one send: kept inside the
    service (the ledger's own logic), never shown to a volunteer."""

    suppressed = "suppressed"
    already_received = "already_received"
    over_cap = "over_cap"


@dataclass(frozen=True)
class RecipientHistory:
    """What the campaign-wide ledger says about one recipient (by hash)."""

    suppressed: bool
    got_this_message: bool
    messages_in_window: int


def skip_reason(history: RecipientHistory, cap: int) -> Rule | None:
    if history.suppressed:
        return Rule.suppressed
    if history.got_this_message:
        return Rule.already_received
    if history.messages_in_window >= cap:
        return Rule.over_cap
    return None


def cap_window_start(now: datetime, window: timedelta) -> datetime:
    return now - window


def stable_id(*parts: str) -> str:
    return hashlib.sha256(":".join(parts).encode()).hexdigest()[:32]


def relay_id(suggestion_id: str) -> str:
    """One relay per suggestion: a second click is the same relay."""
    return stable_id("relay", suggestion_id)


def job_id(relay: str, contact_id: str, channel: Channel) -> str:
    return stable_id("job", relay, contact_id, channel.value)


def invitation_job_id(address_hash: str) -> str:
    """At most one invitation per address, ever, whichever book or contact
    row asks: the id says so to JetStream too."""
    return stable_id("invitation", address_hash)


def invitation_email(*, volunteer: str, campaign: str, confirm_url: str,
                     message_title: str | None = None, message_body: str | None = None) -> tuple[str, str]:
    """Subject and text of the one invitation a contact may receive: who
    writes, on whose behalf, where the address came from, how to accept or
    refuse (GDPR art. 14), in French and English."""
    # the subject is a header: a display name stored before names were checked goes on one line
    subject = (f"{header_name(volunteer)} vous invite à suivre {header_name(campaign)} / "
               f"invites you to follow {header_name(campaign)}")
    carried = f"\n\n{message_title}\n\n{message_body}\n" if message_title and message_body else ""
    text = (
        f"{volunteer} vous écrit en tant que bénévole de {campaign}. Votre adresse vient de son "
        f"carnet d'adresses personnel ; l'équipe de campagne ne la voit pas.{carried}\n"
        f"Voulez-vous recevoir de temps en temps ses messages pour {campaign} ?\n"
        f"Oui ou non, en un clic : {confirm_url}\n"
        f"Sans réponse de votre part, vous ne recevrez plus rien de sa part pour {campaign}.\n\n"
        f"---\n{volunteer} is writing to you as a volunteer for {campaign}. Your address comes "
        f"from their personal address book; campaign staff cannot see it. Would you like to get "
        f"their messages for {campaign} now and then? Yes or no, in one click: {confirm_url}\n"
        f"If you do not answer, you will get nothing more from them for {campaign}."
    )
    return subject, text
