"""Wires the matcher together."""

from __future__ import annotations

from fastapi import FastAPI

from services.matcher.handlers import Clock, Matcher
from services.matcher.settings import MatcherSettings
from shared.bus import Bus
from shared.events import utcnow
from shared.service import create_service_app


def create_app(settings: MatcherSettings | None = None, *, clock: Clock = utcnow) -> FastAPI:
    """``clock`` is for tests that walk through quiet hours and days."""
    settings = settings or MatcherSettings()
    bus = Bus.for_service(settings)
    matcher = Matcher(bus, settings, clock=clock)
    matcher.register()
    app = create_service_app(
        settings=settings,
        bus=bus,
        title="Maillage matcher",
        description="Suggests each published message to the volunteers whose network it fits, "
                    "paced by a daily cap and quiet hours.",
        checks={"index": matcher.profiles.ready, "taxonomy": matcher.taxonomy.ready, "queue": matcher.ready},
        on_start=[matcher.prepare],
        after_start=[matcher.start_background],
        on_stop=[matcher.stop],
    )
    app.state.matcher = matcher
    return app
