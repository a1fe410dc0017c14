"""Wires feed together: settings, database, bus, routes, handlers, the
scheduler that publishes at embargo and withdraws at expiry."""

from __future__ import annotations

from fastapi import FastAPI

from services.feed import handlers, web
from services.feed.api import messages, staff, taxonomy
from services.feed.api.deps import ANSWERS, staff_authenticator
from services.feed.scheduler import Scheduler
from services.feed.settings import FeedSettings
from services.feed.store import create_schema
from services.feed.usecases.publish import MESSAGES_PUBLISHED
from shared.auth import hash_token
from shared.messaging import Bus
from shared.db import make_engine
from shared.service import create_service_app
from shared.web import errors


def create_app(settings: FeedSettings | None = None) -> FastAPI:
    settings = settings or FeedSettings()
    engine = make_engine(settings.database_url)
    bus = Bus.for_service(settings)
    handlers.register(bus, engine)
    scheduler = Scheduler(engine, bus, settings)

    app = create_service_app(
        settings=settings,
        bus=bus,
        title="Maillage feed",
        description="Staff write, approve, publish and withdraw campaign messages, manage the "
        "taxonomy and staff accounts, and see each message's aggregate reach.",
        routers=[staff.me_router, staff.router, staff.audit_router, taxonomy.router, messages.drafts,
                 messages.router],
        engine=engine,
        create_schema=create_schema,
        authenticate=staff_authenticator(engine, hash_token(settings.staff_token.get_secret_value())),
        public_prefixes=web.PUBLIC_PREFIXES,
        after_start=[scheduler.start],
        on_stop=[scheduler.stop],
    )

    app.state.published_counter = MESSAGES_PUBLISHED
    app.state.scheduler = scheduler
    errors.install(app, ANSWERS)  # the API's JSON and the console's error page alike
    web.install(app, settings)
    return app
