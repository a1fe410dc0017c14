"""Assembles a service process: a FastAPI app whose lifespan runs the bus,
plus the operations routes, served by uvicorn."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager

import anyio
import structlog
import uvicorn
from fastapi import APIRouter, FastAPI

from sqlalchemy.engine import Engine

from shared.auth import PUBLIC_PATHS, Authenticator, authenticate_first, nobody
from shared.messaging import Bus
from shared.db import database_ready
from shared.observability.http import ReadinessCheck, count_requests, ops_router
from shared.observability.logging import configure_logging
from shared.settings import ServiceSettings
from shared.web.limits import BodyLimit, BodyLimits
from shared.web.security import add_security_headers

log = structlog.get_logger(__name__)
Hook = Callable[[], Awaitable[None]]
# How long uvicorn lets requests and the bus drain on SIGTERM; Kubernetes'
# terminationGracePeriodSeconds must exceed it (deploy/k8s, checked by a test).
GRACEFUL_SHUTDOWN_SECONDS = 20


def create_service_app(
    *,
    settings: ServiceSettings,
    bus: Bus,
    title: str,
    description: str,
    routers: Sequence[APIRouter] = (),
    checks: dict[str, ReadinessCheck] | None = None,
    on_start: Sequence[Hook] = (),
    on_stop: Sequence[Hook] = (),
    after_start: Sequence[Hook] = (),
    engine: Engine | None = None,
    create_schema: Callable[[Engine], None] | None = None,
    authenticate: Authenticator = nobody,
    public_prefixes: tuple[str, ...] = (),
    body_limits: Mapping[str, int] | None = None,
) -> FastAPI:
    """With an ``engine``, the database joins the readiness checks, its
    schema is created on start, and routes find it as ``app.state.engine``.
    ``body_limits``: path -> body limit for a signed-in caller, for the
    routes that take more than ``settings.max_request_bytes`` (uploads)."""
    checks = dict(checks or {})
    if engine is not None:
        checks["database"] = lambda: anyio.to_thread.run_sync(database_ready, engine)
        if create_schema is not None:

            async def init_db() -> None:
                await anyio.to_thread.run_sync(create_schema, engine)

            on_start = [init_db, *on_start]

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        for hook in on_start:
            await hook()
        await bus.start()
        for hook in after_start:  # needs the schema and the bus: background loops
            await hook()
        log.info("service.started", port=settings.http_port)
        try:
            yield
        finally:
            for hook in on_stop:
                await hook()
            await bus.stop()
            log.info("service.stopped")

    app = FastAPI(title=title, description=description, version="0.1.0", lifespan=lifespan)
    app.state.bus = bus
    app.state.engine = engine
    app.state.settings = settings
    app.include_router(ops_router(bus.service, {"nats": bus.ready, **checks}))
    for router in routers:
        app.include_router(router)
    authenticate_first(app, authenticate, public_prefixes)
    # added after authentication, so it runs before it: nobody's body is read past the limit
    app.add_middleware(BodyLimit, limits=BodyLimits(
        public=settings.max_public_request_bytes, signed_in=settings.max_request_bytes,
        routes=dict(body_limits or {}), public_paths=PUBLIC_PATHS, public_prefixes=public_prefixes))
    count_requests(app, bus.service)
    add_security_headers(app)
    return app


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    common = settings.common
    configure_logging(type(settings).service, common.resolved_log_format, common.log_level)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,  # keep our structured logging
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
