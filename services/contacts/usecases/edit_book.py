"""The volunteer changes their book: add, edit, delete, tag many, record a
contact's consent. Each change republishes the profile it implies."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlmodel import Session, col, select

from services.contacts import book as book_ops
from services.contacts import domain
from services.contacts.book import Book, DuplicateAddress
from services.contacts.domain import Consent, ConsentRuleError, ConsentSource, ContactIn, ContactPatch
from services.contacts.errors import Conflict, Invalid, NotFound
from services.contacts.store import Contact, Volunteer
from services.contacts.usecases._owned import check_taxonomy, own
from services.contacts.usecases._profile import republish
from services.contacts.usecases._unit import Contacts, in_book

T = TypeVar("T")


async def _changing(ctx: Contacts, vol: Volunteer, work: Callable[[Session, Book], T]) -> T:
    result = await in_book(ctx, vol, work)
    await republish(ctx, vol.id)
    return result


def already_in_book(exc: DuplicateAddress) -> Conflict:
    return Conflict(f"{exc.kind}s: this address is already in your book (contact {exc.contact_id})")


async def add_contact(ctx: Contacts, vol: Volunteer, body: ContactIn) -> dict:
    if not body.emails and not body.phones:
        raise Invalid.field("body", "emails", "give an email or a phone")

    def add(session: Session, book: Book) -> dict:
        check_taxonomy(session, body.interests)
        try:
            contact = book_ops.create_contact(session, book, body, body.consent, body.consent_proof)
        except DuplicateAddress as exc:
            raise already_in_book(exc) from exc
        except domain.AddressBlocked as exc:
            raise Invalid.field("body", "consent", str(exc)) from exc
        except ConsentRuleError as exc:
            raise Invalid.field("body", "consent_proof", str(exc)) from exc
        session.flush()
        return book_ops.describe(session, book, contact)

    return await _changing(ctx, vol, add)


async def edit_contact(ctx: Contacts, vol: Volunteer, contact_id: str, body: ContactPatch) -> dict:
    def edit(session: Session, book: Book) -> dict:
        contact = own(session, book, contact_id)
        check_taxonomy(session, body.interests or [])
        try:
            book_ops.update_contact(session, book, contact, body.model_dump(exclude_unset=True))
        except DuplicateAddress as exc:
            raise already_in_book(exc) from exc
        except domain.AddressBlocked as exc:
            raise Invalid.field("body", "emails", str(exc)) from exc
        session.flush()
        return book_ops.describe(session, book, contact)

    return await _changing(ctx, vol, edit)


async def bulk_tag(ctx: Contacts, vol: Volunteer, contact_ids: list[str], kind: str,
                   add: list[str], remove: list[str]) -> int:
    """How many words changed; every id must be one of this book's."""

    def tag(session: Session, book: Book) -> int:
        owned = set(session.exec(select(Contact.id).where(
            col(Contact.volunteer_id) == book.volunteer_id, col(Contact.id).in_(contact_ids))))
        unknown = [cid for cid in contact_ids if cid not in owned]
        if unknown:
            raise NotFound(f"contact {unknown[0]}")
        if kind == "interest":
            check_taxonomy(session, add, field="add")
        return book_ops.bulk_tag(session, book.volunteer_id, sorted(owned), kind, add, remove)

    return await _changing(ctx, vol, tag)


async def delete_contact(ctx: Contacts, vol: Volunteer, contact_id: str) -> None:
    await _changing(ctx, vol, lambda s, b: book_ops.delete_contact(s, own(s, b, contact_id).id))


async def record_consent(ctx: Contacts, vol: Volunteer, contact_id: str, state: Consent, proof: str | None) -> dict:
    """Confirm (with a proof: how and when they agreed) or withdraw. A
    withdrawal can only be undone by the contact, through their own link."""

    def record(session: Session, book: Book) -> dict:
        contact = own(session, book, contact_id)
        try:
            book_ops.set_consent(session, book, contact.id, state, ConsentSource.volunteer, proof)
        except ConsentRuleError as exc:
            raise Invalid.field("body", "state", str(exc)) from exc
        session.flush()
        return book_ops.describe(session, book, contact)

    return await _changing(ctx, vol, record)
