"""What the routes share: keys, the caller, their opened book."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Depends, HTTPException, Request, status
from sqlmodel import Session, select

from services.contacts.book import Book, BookErased, open_book
from services.contacts.crypto import MasterKey
from services.contacts.settings import ContactsSettings
from services.contacts.store import Volunteer
from shared.auth import Authenticator, Principal, hash_token, require, same_token
from shared.blind_index import BlindIndex
from shared.db import in_session
from shared.links import LinkSigner

T = TypeVar("T")
PROVISIONER, VOLUNTEER = "provisioner", "volunteer"


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


def contacts_authenticator(engine, provisioning_token_hash: str) -> Authenticator:
    async def authenticate(token: str) -> Principal | None:
        if same_token(token, provisioning_token_hash):
            return Principal(PROVISIONER)
        digest = hash_token(token)
        vol = await in_session(
            engine, lambda s: s.exec(select(Volunteer).where(Volunteer.token_hash == digest)).first()
        )
        return Principal(VOLUNTEER, vol) if vol else None

    return authenticate


def current_volunteer(principal: Principal = Depends(require(VOLUNTEER))) -> Volunteer:
    return principal.account


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no such {what}")


def conflict(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail=detail)


def keys(request: Request) -> Keys:
    return request.app.state.keys


def settings(request: Request) -> ContactsSettings:
    return request.app.state.settings


async def with_book(request: Request, vol: Volunteer, work: Callable[[Session, Book], T]) -> T:
    """Run ``work(session, book)`` in a worker thread with the caller's book open."""
    k = keys(request)

    def run(session: Session) -> T:
        try:
            book = open_book(session, k.master, k.index, vol)
        except BookErased as exc:
            raise HTTPException(status.HTTP_410_GONE, detail="this book was erased") from exc
        return work(session, book)

    return await in_session(request.app.state.engine, run)
