"""My networks: social accounts and my email identity (my own SMTP
account): connect, see, disconnect. Answers say "connected, which account,
since when" (for email: the server and the From address), never a token,
a username or a password."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response, status

from services.contacts.api.deps import ContactsDep, CurrentVolunteer
from services.contacts.networks import NetworkStatus
from services.contacts.usecases import connect_network
from shared.egress import EgressPolicy

router = APIRouter(prefix="/me/networks", tags=["my networks"])


def egress(request: Request) -> EgressPolicy:
    """The egress policy of this app's settings (MAILLAGE_EGRESS_ALLOW), made once."""
    state = request.app.state
    if getattr(state, "egress", None) is None:
        state.egress = EgressPolicy.of(state.settings.common)
    return state.egress


EgressDep = Annotated[EgressPolicy, Depends(egress)]


@router.get("", summary="Which of my accounts are connected")
async def list_networks(ctx: ContactsDep, vol: CurrentVolunteer) -> list[NetworkStatus]:
    return await connect_network.statuses(ctx, vol)


@router.get("/{network}", summary="Is this account connected")
async def get_network(network: str, ctx: ContactsDep, vol: CurrentVolunteer) -> NetworkStatus:
    return await connect_network.status(ctx, vol, network)


@router.put("/{network}", summary="Connect (or reconnect) a social account or my email identity",
            description="mastodon: instance_url, access_token, handle · bluesky: handle, app_password "
            "(an app password), service_url (an https origin, nothing after it) · "
            "x: access_token (OAuth 2.0 user token), handle · "
            "email (your own SMTP account; your relays' emails then come from your address, through "
            "your server): host (a public name or address), port, security (starttls, tls), username, "
            "password, from_address, display_name. "
            "The credentials are stored encrypted with your key and never shown again.")
async def put_network(network: str, ctx: ContactsDep, vol: CurrentVolunteer, policy: EgressDep,
                      body: dict[str, Any] = Body(...)) -> NetworkStatus:
    return await connect_network.connect(ctx, vol, network, body, policy)


@router.delete("/{network}", status_code=status.HTTP_204_NO_CONTENT, summary="Disconnect an account (email: back to the campaign's relay)")
async def delete_network(network: str, ctx: ContactsDep, vol: CurrentVolunteer) -> Response:
    await connect_network.disconnect(ctx, vol, network)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
