"""Contacts' storage: volunteers, their books, the campaign messages they
may relay, their inbox, and their relay history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, UniqueConstraint, func
from sqlalchemy.orm import registry
from sqlmodel import Field, Session, SQLModel, select

from services.contacts.domain import Consent, ContactView
from shared.events import new_id, utcnow


class ContactsTable(SQLModel, registry=registry()):
    pass


class Volunteer(ContactsTable, table=True):
    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    display_name: str
    email: str = Field(unique=True)
    token_hash: str = Field(unique=True, max_length=64)
    shared_interests: list[str] | None = Field(default=None, sa_column=Column(JSON))
    created_at: datetime = Field(default_factory=utcnow)


class Contact(ContactsTable, table=True):
    __table_args__ = (UniqueConstraint("volunteer_id", "email_norm"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=64)
    volunteer_id: str = Field(foreign_key="volunteer.id", index=True, max_length=64)
    name: str
    email: str
    email_norm: str
    interests: list[str] = Field(sa_column=Column(JSON, nullable=False))
    consent_email: Consent = Consent.unknown
    created_at: datetime = Field(default_factory=utcnow)

    def view(self) -> ContactView:
        return ContactView(self.id, frozenset(self.interests), Consent(self.consent_email))


class CampaignMessage(ContactsTable, table=True):
    message_id: str = Field(primary_key=True, max_length=64)
    title: str
    body: str
    interests: list[str] = Field(sa_column=Column(JSON, nullable=False))
    email_subject: str
    email_body: str
    received_at: datetime = Field(default_factory=utcnow)


class InboxItem(ContactsTable, table=True):
    suggestion_id: str = Field(primary_key=True, max_length=64)
    volunteer_id: str = Field(foreign_key="volunteer.id", index=True, max_length=64)
    message_id: str = Field(max_length=64)
    matched_interests: list[str] = Field(sa_column=Column(JSON, nullable=False))
    audience_size: int
    received_at: datetime = Field(default_factory=utcnow)


class Relay(ContactsTable, table=True):
    id: str = Field(primary_key=True, max_length=64)
    suggestion_id: str = Field(unique=True, max_length=64)
    volunteer_id: str = Field(foreign_key="volunteer.id", index=True, max_length=64)
    message_id: str = Field(max_length=64)
    emails_queued: int
    created_at: datetime = Field(default_factory=utcnow)
    published_at: datetime | None = None


class JobOutcome(ContactsTable, table=True):
    job_id: str = Field(primary_key=True, max_length=64)
    relay_id: str = Field(index=True, max_length=64)
    status: str


def create_schema(engine) -> None:
    ContactsTable.metadata.create_all(engine)


def contacts_of(session: Session, volunteer_id: str) -> list[Contact]:
    return list(
        session.exec(
            select(Contact).where(Contact.volunteer_id == volunteer_id).order_by(Contact.created_at)
        )
    )


def outcome_counts(session: Session, relay: str) -> dict[str, int]:
    rows = session.exec(
        select(JobOutcome.status, func.count()).where(JobOutcome.relay_id == relay).group_by(
            JobOutcome.status
        )
    )
    return dict(rows.all())
