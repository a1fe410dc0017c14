"""Wires the matcher together."""

from __future__ import annotations

from fastapi import FastAPI

from services.matcher.handlers import Matcher
from services.matcher.settings import MatcherSettings
from shared.bus import Bus
from shared.service import create_service_app


def create_app(settings: MatcherSettings | None = None) -> FastAPI:
    settings = settings or MatcherSettings()
    bus = Bus.for_service(settings)
    matcher = Matcher(bus)
    matcher.register()
    app = create_service_app(
        settings=settings,
        bus=bus,
        title="Maillage matcher",
        description="Suggests each published message to the volunteers whose network it fits.",
        checks={"index": matcher.profiles.ready},
        on_start=[matcher.profiles.prepare],
    )
    app.state.matcher = matcher
    return app
