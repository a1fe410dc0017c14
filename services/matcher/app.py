"""The matcher's bootstrap: builds the store, the outbound module and the
NATS handlers around one bus, and hands their lifecycle to the service app."""

from __future__ import annotations

from fastapi import FastAPI

from services.matcher.handlers import Clock, Handlers
from services.matcher.outbound import Outbound
from services.matcher.settings import MatcherSettings
from services.matcher.store import MatcherState
from shared.messaging import Bus
from shared.events import utcnow
from shared.service import create_service_app


def create_app(settings: MatcherSettings | None = None, *, clock: Clock = utcnow) -> FastAPI:
    """``clock`` is for tests that walk through quiet hours and days."""
    settings = settings or MatcherSettings()
    bus = Bus.for_service(settings)
    state = MatcherState.for_settings(settings)
    handlers = Handlers(bus, state, Outbound(bus), release_seconds=settings.release_seconds, clock=clock)
    app = create_service_app(
        settings=settings,
        bus=bus,
        title="Maillage matcher",
        description="Suggests each published message to the volunteers whose network it fits, "
                    "paced by a daily cap and quiet hours.",
        checks={"index": handlers.profiles.ready, "taxonomy": handlers.taxonomy.ready, "queue": state.ready},
        on_start=[handlers.prepare],
        after_start=[handlers.start_background],
        on_stop=[handlers.stop],
    )
    app.state.matcher = state
    app.state.matcher_handlers = handlers
    return app
