"""Wires the email dispatcher together."""

from __future__ import annotations

from fastapi import FastAPI

from services.dispatch.email import api as bounce_api, worker as email_worker
from services.dispatch.email.settings import EmailDispatchSettings
from shared.messaging import Bus
from shared.service import create_service_app


def create_email_app(settings: EmailDispatchSettings | None = None) -> FastAPI:
    settings = settings or EmailDispatchSettings()
    bus = Bus.for_service(settings)
    dispatcher = email_worker.EmailDispatcher(bus, settings)
    return create_service_app(
        settings=settings,
        bus=bus,
        title="Maillage dispatch: email",
        description="Sends one personal email per job through the campaign's SMTP relay.",
        routers=[bounce_api.router(bus, dispatcher.ledger)],
        authenticate=bounce_api.authenticator(settings),
        body_limits=bounce_api.BODY_LIMITS,
        checks=dispatcher.checks(),
        on_start=[dispatcher.prepare],
        on_stop=[dispatcher.close],
    )
