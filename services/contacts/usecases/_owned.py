"""Shared steps: a contact of this book (never another's), and the
campaign's interests a word must be one of."""

from __future__ import annotations

from sqlmodel import Session

from services.contacts import book as book_ops
from services.contacts import domain
from services.contacts.book import Book
from services.contacts.errors import Invalid, NotFound
from services.contacts.store import Contact


def own(session: Session, book: Book, contact_id: str) -> Contact:
    contact = session.get(Contact, contact_id)
    if contact is None or contact.volunteer_id != book.volunteer_id:
        raise NotFound("contact")
    return contact


def check_taxonomy(session: Session, words: list[str], field: str = "interests") -> None:
    if unknown := domain.unknown_interests(words, book_ops.taxonomy(session)):
        raise Invalid.field("body", field, f"not in the campaign's interests: {', '.join(unknown)} "
                                           "(use a tag for your own words)")
