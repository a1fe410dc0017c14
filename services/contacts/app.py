"""Wires contacts together."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from prometheus_client import Counter

from services.contacts import handlers, web
from services.contacts.api import accounts, book, imports, inbox, networks, public
from services.contacts.api.deps import Keys, contacts_authenticator
from services.contacts.relay_click import Relayer
from services.contacts.retention import keep_retention
from services.contacts.settings import ContactsSettings
from services.contacts.store import create_schema
from shared.auth import hash_token
from shared.messaging import Bus
from shared.db import make_engine
from shared.links import InvalidLink
from shared.sealed import TransitKeys
from shared.service import create_service_app
from shared.web.limits import upload_limit

RELAYS = Counter("maillage_contacts_relays_total", "Relays clicked by volunteers.")


def create_app(settings: ContactsSettings | None = None) -> FastAPI:
    settings = settings or ContactsSettings()
    engine = make_engine(settings.database_url)
    bus = Bus.for_service(settings)
    # the suggestion handler relays without a request (auto-relay): it gets
    # what the relay endpoint finds in app.state
    relayer = Relayer(engine, bus, settings, Keys.from_settings(settings),
                      TransitKeys.from_secret(settings.transit_keys))
    handlers.register(bus, engine, relayer)
    background: set[asyncio.Task] = set()

    async def start_retention() -> None:
        background.add(asyncio.create_task(keep_retention(engine, settings.retention_until)))

    async def stop_background() -> None:
        for task in background:
            task.cancel()

    app = create_service_app(
        settings=settings,
        bus=bus,
        title="Maillage contacts",
        description="Each volunteer's confidential contact book, inbox and one-click relay.",
        routers=[accounts.admin, accounts.public, accounts.router, book.router, imports.router,
                 inbox.router, networks.router, public.router],
        engine=engine,
        create_schema=create_schema,
        authenticate=contacts_authenticator(engine, hash_token(settings.provisioning_token.get_secret_value())),
        public_prefixes=("/auth/redeem", "/auth/recover", "/u/", "/consent/", *web.PUBLIC_PREFIXES),
        body_limits={path: upload_limit(settings.max_import_bytes) for path in ("/imports", f"{web.PREFIX}/import")},
        after_start=[start_retention],
        on_stop=[stop_background],
    )
    app.add_exception_handler(InvalidLink, public.invalid_link)
    app.state.relayer = relayer
    app.state.keys = relayer.keys
    app.state.sealer = relayer.sealer
    app.state.relays_counter = RELAYS
    app.state.background = background
    web.install(app, settings)
    return app
