"""What the routes share: typed dependencies (the service's parts, the
caller) and what contacts' errors mean over HTTP."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from sqlalchemy.engine import Engine
from sqlmodel import select

from services.contacts.errors import BookGone, CodeRefused, Conflict, Invalid, NotFound, TooLarge
from services.contacts.store import Volunteer
from services.contacts.usecases._unit import Contacts
from services.contacts.usecases.relay import REFUSAL_STATUS, RelayRefused
from shared.auth import Authenticator, Principal, hash_token, require, same_token
from shared.db import in_session
from shared.web.errors import Answers, not_found

PROVISIONER, VOLUNTEER = "provisioner", "volunteer"


def contacts_authenticator(engine: Engine, provisioning_token_hash: str) -> Authenticator:
    async def authenticate(token: str) -> Principal | None:
        if same_token(token, provisioning_token_hash):
            return Principal(PROVISIONER)
        digest = hash_token(token)
        vol = await in_session(
            engine, lambda s: s.exec(select(Volunteer).where(Volunteer.token_hash == digest)).first()
        )
        return Principal(VOLUNTEER, vol) if vol else None

    return authenticate


def current_volunteer(principal: Annotated[Principal, Depends(require(VOLUNTEER))]) -> Volunteer:
    return principal.account


def contacts(request: Request) -> Contacts:
    return request.app.state.contacts


ContactsDep = Annotated[Contacts, Depends(contacts)]
CurrentVolunteer = Annotated[Volunteer, Depends(current_volunteer)]

# What each error means over HTTP: app.py installs it (shared.web.errors).
ANSWERS: Answers = {
    NotFound: lambda exc: not_found(exc.what),
    Conflict: lambda exc: HTTPException(status.HTTP_409_CONFLICT, detail=exc.detail),
    Invalid: lambda exc: HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=exc.detail),
    BookGone: lambda exc: HTTPException(status.HTTP_410_GONE, detail=str(exc)),
    CodeRefused: lambda exc: HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)),
    TooLarge: lambda exc: HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=str(exc)),
    RelayRefused: lambda exc: HTTPException(REFUSAL_STATUS[exc.reason], detail=exc.detail),
}
