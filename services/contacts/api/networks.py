"""My networks: social accounts and my email identity (my own SMTP
account): connect, see, disconnect. Answers say "connected, which account,
since when" (for email: the server and the From address), never a token,
a username or a password."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Request, Response, status
from pydantic import ValidationError
from sqlmodel import Session

from services.contacts import networks
from services.contacts.api.deps import current_volunteer, not_found, with_book
from services.contacts.book import Book
from services.contacts.networks import NETWORKS, NetworkStatus
from services.contacts.store import Volunteer
from shared.egress import EgressPolicy
from shared.events import Channel

router = APIRouter(prefix="/me/networks", tags=["my networks"])


def egress(request: Request) -> EgressPolicy:
    """The egress policy of this app's settings (MAILLAGE_EGRESS_ALLOW), made once."""
    state = request.app.state
    if getattr(state, "egress", None) is None:
        state.egress = EgressPolicy.of(state.settings.common)
    return state.egress


def known(network: str) -> Channel:
    if network not in {c.value for c in NETWORKS}:
        raise HTTPException(422, detail=[{"loc": ["path", "network"], "type": "enum",
                                          "msg": f"one of {', '.join(c.value for c in NETWORKS)}"}])
    return Channel(network)


@router.get("", summary="Which of my accounts are connected")
async def list_networks(request: Request, vol: Volunteer = Depends(current_volunteer)) -> list[NetworkStatus]:
    def load(session: Session, book: Book) -> list[NetworkStatus]:
        return [networks.status_of(book, networks.account(session, vol.id, n), n) for n in NETWORKS]

    return await with_book(request, vol, load)


@router.get("/{network}", summary="Is this account connected")
async def get_network(network: str, request: Request, vol: Volunteer = Depends(current_volunteer)) -> NetworkStatus:
    channel = known(network)
    return await with_book(request, vol, lambda s, book: networks.status_of(
        book, networks.account(s, vol.id, channel), channel))


@router.put("/{network}", summary="Connect (or reconnect) a social account or my email identity",
            description="mastodon: instance_url, access_token, handle · bluesky: handle, app_password "
            "(an app password), service_url (an https origin, nothing after it) · "
            "x: access_token (OAuth 2.0 user token), handle · "
            "email (your own SMTP account; your relays' emails then come from your address, through "
            "your server): host (a public name or address), port, security (starttls, tls), username, "
            "password, from_address, display_name. "
            "The credentials are stored encrypted with your key and never shown again.")
async def put_network(network: str, request: Request, body: dict[str, Any] = Body(...),
                      vol: Volunteer = Depends(current_volunteer)) -> NetworkStatus:
    channel = known(network)
    try:
        creds = networks.parse(channel, body)
    except ValidationError as exc:
        raise HTTPException(422, detail=networks.validation_detail(exc)) from None
    if refused := await networks.refused_addresses(creds, egress(request)):
        raise HTTPException(422, detail=refused)
    return await with_book(request, vol, lambda s, book: networks.connect(s, book, channel, creds))


@router.delete("/{network}", status_code=status.HTTP_204_NO_CONTENT, summary="Disconnect an account (email: back to the campaign's relay)")
async def delete_network(network: str, request: Request, vol: Volunteer = Depends(current_volunteer)) -> Response:
    channel = known(network)
    if not await with_book(request, vol, lambda s, _book: networks.disconnect(s, vol.id, channel)):
        raise not_found("connected account")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
