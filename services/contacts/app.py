"""Wires contacts together: settings, engine, bus, the use cases' parts
(``Contacts``), the handlers, the routes and pages, and what each error
means over HTTP."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from services.contacts import handlers, web
from services.contacts.api import accounts, book, imports, inbox, networks, public
from services.contacts.api.deps import ANSWERS, contacts_authenticator
from services.contacts.settings import ContactsSettings
from services.contacts.store import create_schema
from services.contacts.usecases._unit import Contacts
from services.contacts.usecases.purge_books import keep_retention
from shared.auth import hash_token
from shared.db import make_engine
from shared.links import InvalidLink
from shared.messaging import Bus
from shared.service import create_service_app
from shared.web import errors
from shared.web.limits import upload_limit


def create_app(settings: ContactsSettings | None = None) -> FastAPI:
    settings = settings or ContactsSettings()
    engine = make_engine(settings.database_url)
    bus = Bus.for_service(settings)
    # built once: the handlers have no request, and relay as a click does (auto-relay)
    ctx = Contacts.from_settings(settings, engine, bus)
    handlers.register(bus, engine, ctx)
    retention: set[asyncio.Task] = set()

    async def start_retention() -> None:
        retention.add(asyncio.create_task(keep_retention(engine, settings.retention_until)))

    async def stop_background() -> None:
        for task in (*retention, *ctx.background):
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
    # Starlette types every handler as taking any Exception; this one only
    # ever gets the class it is registered for
    app.add_exception_handler(InvalidLink, public.invalid_link)  # type: ignore[arg-type]
    errors.install(app, ANSWERS)  # the API's JSON and the volunteer's error page alike
    app.state.contacts = ctx
    app.state.keys, app.state.sealer = ctx.keys, ctx.sealer  # tests open books and jobs with them
    web.install(app, settings)
    return app
