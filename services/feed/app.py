"""Wires feed together: settings, database, bus, routes, handlers."""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import Counter

from services.feed import api, handlers
from services.feed.settings import FeedSettings
from services.feed.store import create_schema
from shared.auth import hash_token
from shared.bus import Bus
from shared.db import make_engine
from shared.service import create_service_app

MESSAGES_PUBLISHED = Counter(
    "maillage_feed_campaign_messages_published_total", "Campaign messages published by staff."
)


def create_app(settings: FeedSettings | None = None) -> FastAPI:
    settings = settings or FeedSettings()
    engine = make_engine(settings.database_url)
    bus = Bus.for_service(settings)
    handlers.register(bus, engine)

    app = create_service_app(
        settings=settings,
        bus=bus,
        title="Maillage feed",
        description="Staff publish campaign messages and see their aggregate reach.",
        routers=[api.router],
        engine=engine,
        create_schema=create_schema,
        authenticate=api.staff_authenticator(hash_token(settings.staff_token.get_secret_value())),
    )
    app.state.published_counter = MESSAGES_PUBLISHED
    return app
