"""The volunteer reads their book: a page of it (search, filters), one
contact, the campaign's interests to tag with."""

from __future__ import annotations

from sqlmodel import Session, select

from services.contacts import book as book_ops
from services.contacts.book import Book, PageQuery
from services.contacts.errors import Invalid
from services.contacts.store import TaxonomyTerm, Volunteer
from services.contacts.usecases._owned import own
from services.contacts.usecases._unit import Contacts, in_book


async def page(ctx: Contacts, vol: Volunteer, query: PageQuery) -> tuple[list[dict], str | None, int]:
    """The page's contacts (described), the next cursor, and how many match."""

    def load(session: Session, book: Book):
        try:
            rows, next_cursor = book_ops.page(session, book, query)
        except ValueError as exc:
            raise Invalid.field("query", "cursor", str(exc)) from exc
        total = book_ops.count_matching(session, book, query)
        return [book_ops.describe(session, book, c) for c in rows], next_cursor, total

    return await in_book(ctx, vol, load)


async def contact(ctx: Contacts, vol: Volunteer, contact_id: str) -> dict:
    """One contact with consent and history: also everything the book holds on them (its export)."""
    return await in_book(ctx, vol, lambda s, b: book_ops.describe(s, b, own(s, b, contact_id)))


async def taxonomy(ctx: Contacts, vol: Volunteer) -> list[TaxonomyTerm]:
    return await in_book(ctx, vol, lambda s, _b: list(s.exec(select(TaxonomyTerm).order_by(TaxonomyTerm.name))))
