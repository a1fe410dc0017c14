"""Versioned pydantic v2 models of every payload that crosses NATS.

Events are frozen and ignore fields they do not know, so that a newer
producer can ship before its consumers do. The rule for changing an event:

- add an optional field (with a default) freely: an older consumer ignores
  it, a newer one reading an older payload gets the default;
- never rename, remove, retype or tighten a field in place: that is a
  breaking change. It gets a new ``schema_version`` (``Literal[2]``) and an
  upcaster, ``@upcaster(Model, 1)``, turning a v1 payload (a dict) into a v2
  one; the bus applies upcasters before validating, so consumers handle the
  current model only. Ship consumers (with the upcaster) before producers;
  keep the upcaster while the streams may hold v1 messages (``max_age``).

What stays strict (``extra="forbid"``): the nested parts that are also HTTP
input (``Variants``, ``TaxonomyTerm``: an unknown field there is a client's
mistake) and the sealed content of a job (``EmailJobContent``, a security
boundary: nothing unexpected is carried inside the seal). A field added to
one of those is a breaking change of the event that carries it.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from enum import StrEnum
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)

from shared.outcomes import OutcomeKind, from_legacy
from shared.smtp_identity import SmtpIdentity
from shared.text import HeaderText

# Interests are taxonomy words ("education", "local:lyon"), never free text:
# the pattern keeps names, addresses and sentences out of events.
InterestName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_:-]{0,63}$")]

_VALID_ADDRESSES: dict[str, str] = {}


def _validated_once(value: object, handler: ValidatorFunctionWrapHandler) -> str:
    # email-validator costs ~20 µs an address, a tenth of the email
    # dispatcher's CPU per job; a relay's jobs all carry the same volunteer
    # address, so each distinct one is validated once (same result, or the
    # same error: failures are not remembered).
    if type(value) is not str:
        return handler(value)
    known = _VALID_ADDRESSES.get(value)
    if known is None:
        known = handler(value)
        if len(_VALID_ADDRESSES) >= 4096:
            _VALID_ADDRESSES.clear()
        _VALID_ADDRESSES[value] = known
    return known


# EmailStr for an address that repeats across events (same schema, same checks).
RepeatedEmailStr = Annotated[EmailStr, WrapValidator(_validated_once)]


def new_id() -> str:
    return uuid.uuid4().hex


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Event(BaseModel):
    # ignore: a newer producer's extra fields are not an error (see above)
    model_config = ConfigDict(frozen=True, extra="ignore")

    event_id: str = Field(default_factory=new_id, min_length=1, max_length=64)
    occurred_at: datetime = Field(default_factory=utcnow)


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_UPCASTERS: dict[tuple[type[BaseModel], int], Upcaster] = {}
_UPCAST_MODELS: set[type[BaseModel]] = set()
E = TypeVar("E", bound=BaseModel)


def upcaster(model: type[BaseModel], from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register ``fn`` turning a ``model`` payload of ``from_version`` into
    the next version (its result names that version in ``schema_version``)."""

    def register(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(model, from_version)] = fn
        _UPCAST_MODELS.add(model)
        return fn

    return register


def upcast(model: type[BaseModel], payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` brought to ``model``'s current version, one step at a time."""
    while (step := _UPCASTERS.get((model, payload.get("schema_version", 1)))) is not None:
        payload = step(payload)
    return payload


def read_event(model: type[E], data: bytes | str) -> E:
    """A payload off the bus as ``model``: upcast if the model has upcasters,
    then validated. Raises ``ValidationError``."""
    if model in _UPCAST_MODELS:
        try:
            raw = json.loads(data)
        except ValueError:
            raw = None  # not JSON: pydantic says so below, as for any model
        if isinstance(raw, dict):
            return model.model_validate(upcast(model, raw))
    # the common case parses once, in pydantic-core
    return model.model_validate_json(data)


class Channel(StrEnum):
    email = "email"
    mastodon = "mastodon"
    bluesky = "bluesky"
    x = "x"


class EmailVariant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=50_000)


class ShortVariant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(min_length=1, max_length=500)


class Variants(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    email: EmailVariant
    short: ShortVariant | None = None


class MessagePublished(Event):
    """A campaign message staff made public. No PII: campaign content only."""

    schema_version: Literal[1] = 1
    message_id: str = Field(min_length=1, max_length=64)
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=50_000)
    interests: tuple[InterestName, ...] = ()
    variants: Variants
    link: str | None = Field(default=None, max_length=2000)
    regions: tuple[str, ...] = Field(default=(), description="targeted regions; empty: everywhere")
    locales: tuple[str, ...] = Field(default=(), description="targeted locales; empty: all")
    priority: int = Field(default=1, ge=0, le=3, description="0 low … 3 urgent")
    expires_at: datetime | None = None


class MessageWithdrawn(Event):
    """Staff withdrew a message (or it expired): suggestions of it leave the
    inboxes and its pending jobs are dropped."""

    schema_version: Literal[1] = 1
    message_id: str = Field(min_length=1, max_length=64)
    reason: Literal["withdrawn", "expired"] = "withdrawn"


class TaxonomyTerm(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: InterestName
    label_fr: str = Field(min_length=1, max_length=100)
    label_en: str = Field(min_length=1, max_length=100)


class Taxonomy(Event):
    """The campaign's interest words: contacts and volunteers tag with these."""

    schema_version: Literal[1] = 1
    terms: tuple[TaxonomyTerm, ...]


class InterestProfile(Event):
    """A volunteer's opt-in interest profile: per shared interest and channel,
    how many confirmed contacts they have. Counts only, never identities."""

    schema_version: Literal[1] = 1
    volunteer_id: str = Field(min_length=1, max_length=64)
    audience: dict[InterestName, dict[Channel, Annotated[int, Field(ge=0)]]] = Field(
        default_factory=dict,
        description="interest -> channel -> number of confirmed contacts",
    )
    regions: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, description="region -> number of confirmed contacts there"
    )
    locales: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict, description="locale -> number of confirmed contacts"
    )


class Suggestion(Event):
    """The matcher's advice to one volunteer: this message fits your network."""

    schema_version: Literal[1] = 1
    suggestion_id: str = Field(min_length=1, max_length=64)
    volunteer_id: str = Field(min_length=1, max_length=64)
    message_id: str = Field(min_length=1, max_length=64)
    matched_interests: tuple[InterestName, ...]
    audience_size: int = Field(ge=0)
    score: float = Field(default=0.0, ge=0, description="audience weighted by priority: the inbox order")
    matched_regions: tuple[Annotated[str, Field(min_length=1, max_length=100)], ...] = Field(
        default=(), max_length=50,
        description="regions of the volunteer's confirmed contacts the message reaches (staff see k-anonymous counts)",
    )


class ReleaseWatermark(Event):
    """A matcher partition's note to itself: every queue opening up to
    ``released_until`` went out. Read back on start, so a release that no
    replica ran is run late instead of being lost."""

    schema_version: Literal[1] = 1
    partition: str = Field(pattern=r"^[0-9]+-of-[0-9]+$")
    released_until: datetime


class RelayRequested(Event):
    """A volunteer clicked "relay": counts for staff, no recipient identity."""

    schema_version: Literal[1] = 1
    relay_id: str = Field(min_length=1, max_length=64)
    volunteer_id: str = Field(min_length=1, max_length=64)
    message_id: str = Field(min_length=1, max_length=64)
    jobs_queued: dict[Channel, int]


AddressHash = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class _EmailRouting(Event):
    """What dispatch-email acts on before it opens a job, in clear: which
    job (dedupe, the sent ledger), whose relay of which message (withdrawal,
    the volunteer's rate, the result) and the address's keyed hash
    (suppression). Nothing here names a person."""

    schema_version: Literal[2] = 2
    # sign_in: a single-use sign-in link mailed to a volunteer's own address
    kind: Literal["relay", "invitation", "sign_in"] = "relay"
    job_id: str = Field(min_length=1, max_length=64)
    relay_id: str = Field(min_length=1, max_length=64)
    message_id: str = Field(min_length=1, max_length=64)
    volunteer_id: str = Field(min_length=1, max_length=64)
    recipient_hash: AddressHash = Field(description="keyed hash of the address, for the suppression check")


class EmailJob(_EmailRouting):
    """One email to one recipient, as NATS carries and stores it: the ids in
    clear, everything else sealed with the email channel's transit key
    (``shared.sealed``), which only contacts and dispatch-email hold."""

    sealed: str = Field(min_length=1, max_length=1_048_576, description=(
        "EmailJobContent, sealed (AES-256-GCM, base64) with the email channel's key; the channel, job id, kind, "
        "relay, message, volunteer and recipient hash bound as associated data"))


class EmailJobContent(BaseModel):
    """What an email job carries sealed: who writes to whom, what, and
    through which account. Validated again once opened: the dispatcher
    trusts a sealed field no more than a clear one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    sender_name: HeaderText = Field(min_length=1, max_length=200)
    reply_to: RepeatedEmailStr
    recipient_name: HeaderText = Field(max_length=200)
    recipient_email: EmailStr
    # Campaign text for a relay, but an invitation's names the volunteer who writes: sealed alike.
    subject: HeaderText = Field(min_length=1, max_length=200)
    body_text: str = Field(min_length=1, max_length=100_000)
    # a capability: whoever holds it unsubscribes the person
    unsubscribe_url: HeaderText = Field(min_length=1, max_length=2000, description="RFC 8058 one-click URL")
    note: str | None = Field(default=None, max_length=2000, description="the volunteer's own words to this contact")
    smtp_account: SmtpIdentity | None = Field(
        default=None, description="the volunteer's own SMTP account; none: the campaign's relay")


class OpenedEmailJob(_EmailRouting, EmailJobContent):
    """An email job with its content: what contacts builds before sealing
    and what dispatch-email renders after opening. Never published."""

    # Said here, not left to how pydantic merges its bases' configs: what
    # comes out of the seal carries nothing unexpected (a security boundary).
    model_config = ConfigDict(frozen=True, extra="forbid")

    def content(self) -> EmailJobContent:
        return EmailJobContent.model_construct(**{name: getattr(self, name) for name in EmailJobContent.model_fields})


class SocialPostJob(Event):
    """One post on one of the volunteer's own accounts (the subject says
    which network). The account's credentials travel sealed with that
    network's own transit key, which only contacts and that network's
    dispatcher hold, the channel and job id bound as associated data: NATS,
    its disk, its logs and the other dispatchers never see them in clear."""

    schema_version: Literal[1] = 1
    job_id: str = Field(min_length=1, max_length=64)
    relay_id: str = Field(min_length=1, max_length=64)
    message_id: str = Field(min_length=1, max_length=64)
    volunteer_id: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=2000, description="the message's short variant")
    link: str | None = Field(default=None, max_length=2000)
    credentials: str = Field(min_length=1, max_length=8000, description="sealed account credentials (base64)")


class DeliveryStatus(StrEnum):
    delivered = "delivered"
    failed = "failed"


class _JobOutcome(Event):
    """What every report about one job carries: its ids and its channel."""

    job_id: str = Field(min_length=1, max_length=64)
    relay_id: str = Field(min_length=1, max_length=64)
    message_id: str = Field(min_length=1, max_length=64)
    volunteer_id: str = Field(min_length=1, max_length=64)
    channel: Channel


class DispatchResult(_JobOutcome):
    """What became of one job. No recipient identity: the job id links back
    to the volunteer's history inside contacts.

    ``outcome`` is what readers act on (shared.outcomes.meaning); ``reason``
    is free text for people (the SMTP code, the HTTP status). A result from
    a producer older than ``outcome`` gets the kind its status and reason
    meant, so it still counts right during a rolling deploy."""

    schema_version: Literal[1] = 1
    status: DeliveryStatus
    reason: str | None = Field(default=None, max_length=200)
    outcome: OutcomeKind = Field(default=None, validate_default=True)

    @field_validator("outcome", mode="before")
    @classmethod
    def _outcome_of_older_producer(cls, value: object, info: ValidationInfo) -> object:
        if value is not None:
            return value
        return from_legacy(info.data.get("status", ""), info.data.get("reason")) or OutcomeKind.failed

    @property
    def detail(self) -> str | None:
        return self.reason


class DeadLetter(_JobOutcome):
    """A job that failed on every attempt (4xx, lost connections): kept for
    operations to look into and replay. Ids only: contacts rebuilds the job
    from its id; the recipient's identity never lands here."""

    schema_version: Literal[1] = 1
    reason: str = Field(max_length=200)
    attempts: int = Field(ge=1)


class BounceReported(Event):
    """A delivery status notification (RFC 3464) said an email sent for this
    job failed for good: contacts suppresses the address and marks the contact."""

    schema_version: Literal[1] = 1
    job_id: str = Field(min_length=1, max_length=64)
    address_hash: AddressHash
    status: str = Field(pattern=r"^5\.[0-9]{1,3}\.[0-9]{1,3}$", description="the DSN's Status: field")


class Suppressed(Event):
    """Never write to this address again (it is a keyed hash, not the address)."""

    schema_version: Literal[1] = 1
    address_hash: AddressHash
    reason: Literal["unsubscribe", "bounce", "complaint"]
