"""Wires one social dispatcher: its settings, its adapter on one pooled
HTTP client, its outbound module, the post use case behind the NATS
subscription, the service's operations routes."""

from __future__ import annotations

from fastapi import FastAPI

from services.dispatch.social import worker
from services.dispatch.social.outbound import Outbound
from services.dispatch.social.settings import SocialDispatchSettings
from services.dispatch.social.usecases.post_job import Poster, PostJob
from services.dispatch.social.wiring import NETWORKS
from services.dispatch.withdrawals import WithdrawnMessages
from shared.catalogue import SubjectSpec
from shared.egress import EgressPolicy, PinnedClient
from shared.messaging import Bus
from shared.service import create_service_app


class SocialDispatcher:
    """One network's dispatcher parts, wired as the service runs them."""

    def __init__(self, bus: Bus, settings: SocialDispatchSettings, poster: Poster,
                 jobs: SubjectSpec, results: SubjectSpec) -> None:
        self.withdrawn = WithdrawnMessages(bus)
        self.outbound = Outbound(bus, poster.channel, results)
        self.post = PostJob(settings, poster, self.outbound, self.withdrawn)
        worker.subscribe(bus, settings, jobs, self.post)


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
