"""My social accounts: connect, see, disconnect. Answers say "connected,
which account, since when", never a token or a password."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response, status
from pydantic import ValidationError
from sqlmodel import Session

from services.contacts import networks
from services.contacts.api.deps import current_volunteer, not_found, with_book
from services.contacts.book import Book
from services.contacts.networks import SOCIAL, NetworkStatus
from services.contacts.store import Volunteer
from shared.events import Channel

router = APIRouter(prefix="/me/networks", tags=["my social accounts"])


def social(network: str) -> Channel:
    if network not in {c.value for c in SOCIAL}:
        raise HTTPException(422, detail=[{"loc": ["path", "network"], "type": "enum",
                                          "msg": f"one of {', '.join(c.value for c in SOCIAL)}"}])
    return Channel(network)


@router.get("", summary="Which of my social accounts are connected")
async def list_networks(request: Request, vol: Volunteer = Depends(current_volunteer)) -> list[NetworkStatus]:
    def load(session: Session, book: Book) -> list[NetworkStatus]:
        return [networks.status_of(book, networks.account(session, vol.id, n), n) for n in SOCIAL]

    return await with_book(request, vol, load)


@router.get("/{network}", summary="Is this social account connected")
async def get_network(network: str, request: Request, vol: Volunteer = Depends(current_volunteer)) -> NetworkStatus:
    channel = social(network)
    return await with_book(request, vol, lambda s, book: networks.status_of(
        book, networks.account(s, vol.id, channel), channel))


@router.put("/{network}", summary="Connect (or reconnect) a social account",
            description="mastodon: instance_url, access_token, handle · bluesky: handle, app_password "
            "(an app password), service_url · x: access_token (OAuth 2.0 user token), handle. "
            "The credentials are stored encrypted with your key and never shown again.")
async def put_network(network: str, request: Request, body: dict[str, Any] = Body(...),
                      vol: Volunteer = Depends(current_volunteer)) -> NetworkStatus:
    channel = social(network)
    try:
        creds = networks.parse(channel, body)
    except ValidationError as exc:
        raise HTTPException(422, detail=networks.validation_detail(exc)) from None
    return await with_book(request, vol, lambda s, book: networks.connect(s, book, channel, creds))


@router.delete("/{network}", status_code=status.HTTP_204_NO_CONTENT, summary="Disconnect a social account")
async def delete_network(network: str, request: Request, vol: Volunteer = Depends(current_volunteer)) -> Response:
    channel = social(network)
    if not await with_book(request, vol, lambda s, _book: networks.disconnect(s, vol.id, channel)):
        raise not_found("connected account")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
