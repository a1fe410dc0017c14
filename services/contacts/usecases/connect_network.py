"""The volunteer connects (or reconnects) a social account or their own
SMTP account, sees which are connected, disconnects one. Credentials are
sealed with their book's key and never shown again; a server they name
must be one the egress policy lets the dispatchers reach."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from services.contacts import networks
from services.contacts.errors import Invalid, NotFound
from services.contacts.networks import NETWORKS, NetworkStatus
from services.contacts.store import Volunteer
from services.contacts.usecases._unit import Contacts, in_book
from shared.egress import EgressPolicy
from shared.events import Channel


def known(network: str) -> Channel:
    if network not in {c.value for c in NETWORKS}:
        raise Invalid([{"loc": ["path", "network"], "type": "enum",
                        "msg": f"one of {', '.join(c.value for c in NETWORKS)}"}])
    return Channel(network)


async def statuses(ctx: Contacts, vol: Volunteer) -> list[NetworkStatus]:
    return await in_book(ctx, vol, lambda s, book: [
        networks.status_of(book, networks.account(s, vol.id, n), n) for n in NETWORKS])


async def status(ctx: Contacts, vol: Volunteer, network: str) -> NetworkStatus:
    channel = known(network)
    return await in_book(ctx, vol, lambda s, book: networks.status_of(
        book, networks.account(s, vol.id, channel), channel))


async def connect(ctx: Contacts, vol: Volunteer, network: str, body: dict[str, Any],
                  egress: EgressPolicy) -> NetworkStatus:
    channel = known(network)
    try:
        creds = networks.parse(channel, body)
    except ValidationError as exc:
        raise Invalid(networks.validation_detail(exc)) from None
    if refused := await networks.refused_addresses(creds, egress):
        raise Invalid(refused)
    return await in_book(ctx, vol, lambda s, book: networks.connect(s, book, channel, creds))


async def disconnect(ctx: Contacts, vol: Volunteer, network: str) -> None:
    """Email: back to the campaign's relay."""
    channel = known(network)
    if not await in_book(ctx, vol, lambda s, _book: networks.disconnect(s, vol.id, channel)):
        raise NotFound("connected account")
