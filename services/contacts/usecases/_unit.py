"""The unit of work every contacts use case runs in, and what they need
with or without an HTTP request (the handlers have none)."""

from __future__ import annotations

import base64
from collections.abc import Callable
import asyncio
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.contacts.book import Book, BookErased, open_book
from services.contacts.crypto import MasterKey
from services.contacts.errors import BookGone
from services.contacts.settings import ContactsSettings
from services.contacts.store import Volunteer
from shared.blind_index import BlindIndex
from shared.db import in_session
from shared.links import LinkSigner
from shared.messaging import Bus
from shared.sealed import TransitKeys

T = TypeVar("T")


@dataclass(frozen=True)
class Keys:
    master: MasterKey
    index: BlindIndex
    links: LinkSigner

    @classmethod
    def from_settings(cls, settings: ContactsSettings) -> Keys:
        def b64(secret) -> bytes:
            return base64.b64decode(secret.get_secret_value())

        return cls(
            MasterKey.from_setting(settings.master_key.get_secret_value()),
            BlindIndex(b64(settings.address_index_key)),
            LinkSigner(b64(settings.link_key)),
        )


@dataclass(frozen=True)
class Contacts:
    """The service's parts a use case reaches: app.py builds it once; the
    routes, pages and handlers hand it on."""

    engine: Engine
    bus: Bus
    settings: ContactsSettings
    keys: Keys
    sealer: TransitKeys
    background: set[asyncio.Task] = field(default_factory=set)  # imports running: cancelled at stop

    @classmethod
    def from_settings(cls, settings: ContactsSettings, engine: Engine, bus: Bus) -> Contacts:
        return cls(engine, bus, settings, Keys.from_settings(settings), TransitKeys.from_secret(settings.transit_keys))


async def unit(engine: Engine, work: Callable[[Session], T]) -> T:
    """``work`` in one transaction, committed when it returns; an exception
    rolls everything back."""

    def run(session: Session) -> T:
        result = work(session)
        session.commit()
        return result

    return await in_session(engine, run)


def opened(session: Session, keys: Keys, vol: Volunteer) -> Book:
    """The volunteer's book; a key made on first use is committed at once,
    before anything is sealed with it, so two first requests cannot each
    seal with a key of their own."""
    try:
        book = open_book(session, keys.master, keys.index, vol)
    except BookErased as exc:
        raise BookGone() from exc
    if session.dirty:
        session.commit()
    return book


async def in_book(ctx: Contacts, vol: Volunteer, work: Callable[[Session, Book], T]) -> T:
    """``work(session, book)`` with the volunteer's book open, in one transaction."""
    return await unit(ctx.engine, lambda session: work(session, opened(session, ctx.keys, vol)))
