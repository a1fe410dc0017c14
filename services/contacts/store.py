"""Contacts' tables and the queries over them.

What is in clear, and why: ids, timestamps, consent states, interests and
tags (taxonomy words the profile counts), commune/region/locale (used to
target). What is sealed with the volunteer's key: everything that names or
reaches a person (name, emails, phones, handles, notes, consent proofs,
rejected import rows). Addresses are findable only through keyed hashes."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import JSON, Column, Index, LargeBinary, UniqueConstraint
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from shared.events import new_id, utcnow
from shared.migrations import upgrade


class ContactsTable(SQLModel, registry=registry()):
    pass


def sealed(nullable: bool = False) -> Column:
    return Column(LargeBinary, nullable=nullable)


class Volunteer(ContactsTable, table=True):
    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    display_name: str
    email: str = Field(unique=True)
    token_hash: str | None = Field(default=None, unique=True, max_length=64)
    key_version: int | None = None
    wrapped_key: bytes | None = Field(default=None, sa_column=sealed(nullable=True))
    shared_interests: list[str] | None = Field(default=None, sa_column=Column(JSON))
    # shared interests whose suggestions contacts relays without a click;
    # null (the default) or empty: every relay stays a click
    auto_relay_interests: list[str] | None = Field(default=None, sa_column=Column(JSON))
    # Every web session carries the epoch it was opened in; sign-out, a new
    # credential and erasure bump it, which ends all of them at once, on
    # every replica (they all read this row).
    session_epoch: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    created_at: datetime = Field(default_factory=utcnow)


class SignInLink(ContactsTable, table=True):
    """A single-use, short-lived sign-in code mailed to the account's own
    address when the volunteer asks for one (lost access). Only its hash is
    kept; the campaign's provisioning never sees it."""

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    code_hash: str = Field(unique=True, max_length=64)
    volunteer_id: str = Field(foreign_key="volunteer.id", max_length=64, index=True)
    expires_at: datetime
    used_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Invite(ContactsTable, table=True):
    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    code_hash: str = Field(unique=True, max_length=64)
    display_name: str
    email: str
    expires_at: datetime
    redeemed_at: datetime | None = None
    volunteer_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)


class Contact(ContactsTable, table=True):
    __table_args__ = (Index("ix_contact_page", "volunteer_id", "created_at", "id"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    volunteer_id: str = Field(foreign_key="volunteer.id", max_length=64)
    sealed: bytes = Field(sa_column=sealed())  # name, emails, phones, handles, notes
    locale: str | None = Field(default=None, max_length=16)
    commune: str | None = Field(default=None, max_length=100)
    region: str | None = Field(default=None, max_length=100)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class ContactAddress(ContactsTable, table=True):
    """Keyed hash of one normalized email or phone: dedupe within a book,
    and the cross-volunteer rules, without the address."""

    __table_args__ = (UniqueConstraint("volunteer_id", "kind", "blind"),)

    contact_id: str = Field(foreign_key="contact.id", primary_key=True, max_length=64, ondelete="CASCADE")
    kind: str = Field(primary_key=True, max_length=8)
    blind: str = Field(primary_key=True, max_length=64, index=True)
    volunteer_id: str = Field(max_length=64)


class ContactTag(ContactsTable, table=True):
    """An interest (campaign taxonomy), a tag (the volunteer's own word), or
    a channel the contact can be reached on: what the book filters by."""

    __table_args__ = (Index("ix_contacttag_lookup", "volunteer_id", "tag"),)

    contact_id: str = Field(foreign_key="contact.id", primary_key=True, max_length=64, ondelete="CASCADE")
    kind: str = Field(primary_key=True, max_length=8)  # interest | tag | channel
    tag: str = Field(primary_key=True, max_length=64)
    volunteer_id: str = Field(max_length=64)


class SearchToken(ContactsTable, table=True):
    __table_args__ = (Index("ix_searchtoken_lookup", "volunteer_id", "token"),)

    contact_id: str = Field(foreign_key="contact.id", primary_key=True, max_length=64, ondelete="CASCADE")
    token: str = Field(primary_key=True, max_length=32)
    volunteer_id: str = Field(max_length=64)


class ConsentRecord(ContactsTable, table=True):
    __table_args__ = (Index("ix_consent_lookup", "volunteer_id", "channel", "state"),)

    contact_id: str = Field(foreign_key="contact.id", primary_key=True, max_length=64, ondelete="CASCADE")
    channel: str = Field(primary_key=True, max_length=16)
    volunteer_id: str = Field(max_length=64)
    state: str = Field(max_length=16)
    source: str = Field(max_length=32)
    updated_at: datetime = Field(default_factory=utcnow)
    invited_at: datetime | None = None
    proof: bytes | None = Field(default=None, sa_column=sealed(nullable=True))


class ConsentEvent(ContactsTable, table=True):
    """The history of each consent, for the proof GDPR asks for."""

    id: int | None = Field(default=None, primary_key=True)
    contact_id: str = Field(foreign_key="contact.id", index=True, max_length=64, ondelete="CASCADE")
    channel: str = Field(max_length=16)
    state: str = Field(max_length=16)
    source: str = Field(max_length=32)
    at: datetime = Field(default_factory=utcnow)


class Suppression(ContactsTable, table=True):
    """Campaign-wide: this address must not be written to, invited, or
    marked confirmed by any volunteer. ``reason``: unsubscribe and bounce
    are for good (the dispatchers replay them forever); refused (the
    person's "no" to an invitation) only the person lifts, by saying yes
    through their own link."""

    blind: str = Field(primary_key=True, max_length=64)
    reason: str = Field(max_length=32)
    created_at: datetime = Field(default_factory=utcnow)


class InvitationSent(ContactsTable, table=True):
    """Campaign-wide: this address (keyed hash) has had its one invitation,
    whichever book or contact row sent it. ``claim`` names the contact row
    that sent it (a hash of its id), so that row alone may retry a send
    that failed midway; no volunteer id is kept here."""

    blind: str = Field(primary_key=True, max_length=64)
    claim: str = Field(max_length=64)
    at: datetime = Field(default_factory=utcnow)


class DeliveryLedger(ContactsTable, table=True):
    """Campaign-wide: who (by keyed hash) got which message, when — so two
    friends never send the same person the same message, and caps hold."""

    __table_args__ = (Index("ix_ledger_recent", "blind", "at"),)

    blind: str = Field(primary_key=True, max_length=64)
    message_id: str = Field(primary_key=True, max_length=64)
    relay_id: str = Field(max_length=64)
    at: datetime = Field(default_factory=utcnow)


class CampaignMessage(ContactsTable, table=True):
    message_id: str = Field(primary_key=True, max_length=64)
    title: str
    body: str
    interests: list[str] = Field(sa_column=Column(JSON, nullable=False))
    email_subject: str
    email_body: str
    short_text: str | None = None  # the variant posted on social networks and in share links
    link: str | None = Field(default=None, max_length=2000)
    priority: int = 1
    expires_at: datetime | None = None
    withdrawn_at: datetime | None = None
    received_at: datetime = Field(default_factory=utcnow)


class TaxonomyTerm(ContactsTable, table=True):
    """The campaign's interest words, as feed last published them."""

    name: str = Field(primary_key=True, max_length=64)
    label_fr: str
    label_en: str


class InboxItem(ContactsTable, table=True):
    suggestion_id: str = Field(primary_key=True, max_length=64)
    volunteer_id: str = Field(foreign_key="volunteer.id", index=True, max_length=64, ondelete="CASCADE")
    message_id: str = Field(max_length=64)
    matched_interests: list[str] = Field(sa_column=Column(JSON, nullable=False))
    audience_size: int
    score: float = 0.0
    received_at: datetime = Field(default_factory=utcnow)


class Relay(ContactsTable, table=True):
    id: str = Field(primary_key=True, max_length=64)
    suggestion_id: str = Field(unique=True, max_length=64)
    volunteer_id: str = Field(foreign_key="volunteer.id", index=True, max_length=64, ondelete="CASCADE")
    message_id: str = Field(max_length=64)
    emails_queued: int
    automatic: bool = False  # relayed by the volunteer's auto-relay choice, not a click
    skipped: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    published_at: datetime | None = None


class SentItem(ContactsTable, table=True):
    """The volunteer's history: what was sent to whom (by contact id)."""

    job_id: str = Field(primary_key=True, max_length=64)
    relay_id: str = Field(index=True, max_length=64)
    contact_id: str | None = Field(default=None, index=True, max_length=64)
    message_id: str = Field(max_length=64)
    channel: str = Field(max_length=16)
    status: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=200)  # why it failed, for people: smtp 550, bounce 5.1.1 …
    outcome: str | None = Field(default=None, max_length=32)  # an OutcomeKind; None: no result yet, or from before it
    updated_at: datetime = Field(default_factory=utcnow)


class NetworkAccount(ContactsTable, table=True):
    """A social account the volunteer connected. Its credentials and handle
    are sealed with the volunteer's data key, like their contacts: erasing
    the volunteer's key erases them too."""

    volunteer_id: str = Field(foreign_key="volunteer.id", primary_key=True, max_length=64, ondelete="CASCADE")
    network: str = Field(primary_key=True, max_length=16)
    sealed: bytes = Field(sa_column=sealed())  # credentials and the account's handle
    connected_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None  # the network refused the credentials: reconnect


class ImportJob(ContactsTable, table=True):
    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    volunteer_id: str = Field(foreign_key="volunteer.id", index=True, max_length=64, ondelete="CASCADE")
    status: str = Field(max_length=16)  # running | done | failed
    bytes_total: int = 0
    bytes_read: int = 0
    rows: int = 0
    imported: int = 0
    merged: int = 0
    unchanged: int = 0
    rejected: int = 0
    error: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None


class ImportRow(ContactsTable, table=True):
    """One row's outcome; rejected rows keep their (sealed) text and reason."""

    import_id: str = Field(foreign_key="importjob.id", primary_key=True, max_length=64, ondelete="CASCADE")
    row: int = Field(primary_key=True)
    outcome: str = Field(max_length=16)  # imported | merged | unchanged | rejected
    contact_id: str | None = Field(default=None, max_length=64)
    sealed: bytes | None = Field(default=None, sa_column=sealed(nullable=True))


MIGRATIONS = Path(__file__).with_name("migrations")


def create_schema(engine) -> None:
    """Bring the database to the current schema with Alembic."""
    upgrade(engine, MIGRATIONS)
