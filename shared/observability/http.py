"""/healthz, /readyz and /metrics, the same for every service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shared.asyncapi import document
from shared.observability.metrics import HTTP_REQUESTS

ReadinessCheck = Callable[[], Awaitable[tuple[bool, str]]]


def ops_router(service: str, checks: dict[str, ReadinessCheck]) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/asyncapi.json", summary="AsyncAPI 3.0: the NATS subjects this service sends and receives")
    async def asyncapi() -> dict:
        return document(service)

    @router.get("/healthz", summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: NATS, streams and database are usable")
    async def readyz() -> JSONResponse:
        results = {}
        for name, check in checks.items():
            try:
                ok, detail = await check()
            except Exception as exc:  # a failing check is a "not ready", never a 500
                ok, detail = False, type(exc).__name__
            results[name] = {"ok": ok, "detail": detail}
        ready = all(r["ok"] for r in results.values())
        return JSONResponse({"ready": ready, "checks": results}, status_code=200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def count_requests(app: FastAPI, service: str) -> None:
    @app.middleware("http")
    async def _count(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "unmatched")
        HTTP_REQUESTS.labels(service, template, str(response.status_code)).inc()
        return response
