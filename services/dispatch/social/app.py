"""Wires one social dispatcher: its settings, its adapter on one pooled
HTTP client, its worker, the service's operations routes."""

from __future__ import annotations

from fastapi import FastAPI

from services.dispatch.social.settings import SocialDispatchSettings
from services.dispatch.social.wiring import NETWORKS
from services.dispatch.social.worker import SocialDispatcher
from shared.messaging import Bus
from shared.egress import EgressPolicy, PinnedClient
from shared.service import create_service_app


def create_social_app(channel: str, settings: SocialDispatchSettings | None = None) -> FastAPI:
    """The dispatcher of one social network (``mastodon``, ``bluesky``, ``x``)."""
    network = NETWORKS[channel]
    settings = settings or network.settings()
    bus = Bus.for_service(settings)
    # every connection passes the egress policy: instance and PDS URLs are the volunteers'
    http = PinnedClient(EgressPolicy.of(settings.common), timeout=settings.http_timeout)
    dispatcher = SocialDispatcher(bus, settings, network.poster(http, settings), network.jobs, network.results)
    return create_service_app(
        settings=settings,
        bus=bus,
        title=f"Maillage dispatch: {channel}",
        description=network.description,
        checks={"withdrawals": dispatcher.withdrawn.replay.ready},
        on_start=[dispatcher.withdrawn.replay.prepare],
        on_stop=[http.aclose],
    )
