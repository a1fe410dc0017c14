"""Request body limits, enforced while the body streams in.

A raw ASGI middleware, outside authentication and outside every parser:
it wraps ``receive``, so no layer behind it (FastAPI's JSON reader,
Starlette's multipart parser and its spooled temporary files, a route's
``request.body()``) ever holds more than the limit. A declared
Content-Length over the limit is refused before a byte is read.

Who gets which limit: a caller without a credential gets the small public
limit, whatever the route. A caller with a credential gets the larger one,
or a route's own (uploads, DSNs). A bearer token counts only where the
authentication middleware checks it before the body is read (not on public
routes); a session cookie counts only when it verifies as signed in. So a
stranger can make a service hold at most the public limit."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# What a multipart upload adds around its file: boundaries, part headers,
# the small form fields beside it (a CSRF token, a column mapping).
MULTIPART_ALLOWANCE = 64 * 1024


def human_size(n: int) -> str:
    """"64 KiB"; a limit that is not a round number keeps its exact bytes."""
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n // size} {unit}" if n % size == 0 else f"{n / size:.2f} {unit} ({n} bytes)"
    return f"{n} bytes"


def upload_limit(file_bytes: int) -> int:
    """The body limit of a multipart route whose file may reach ``file_bytes``."""
    return file_bytes + MULTIPART_ALLOWANCE


@dataclass(frozen=True)
class BodyLimits:
    public: int  # a caller without a credential
    signed_in: int  # a caller with one, on a route without its own limit
    routes: Mapping[str, int] = field(default_factory=dict)  # path -> limit for a signed-in caller
    public_paths: frozenset[str] = frozenset()  # where no bearer token is checked before the body
    public_prefixes: tuple[str, ...] = ()

    def for_request(self, scope: Scope) -> int:
        if not _credentialed(scope, self):
            return self.public
        return self.routes.get(scope["path"], self.signed_in)


def _credentialed(scope: Scope, limits: BodyLimits) -> bool:
    headers = Headers(scope=scope)
    path = scope["path"]
    if path not in limits.public_paths and not path.startswith(limits.public_prefixes):
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return True
    # The thin clients' pages are public routes that check their session
    # themselves, after FastAPI has parsed the form: the cookie is checked
    # here (a signature, no database) so a forged one earns nothing.
    sessions = getattr(scope["app"].state, "web_sessions", None) if "app" in scope else None
    if sessions is None or "cookie" not in headers:
        return False
    try:
        session = sessions.read(Request(scope))
    except Exception:  # a cookie that cannot be read is no credential, never a 500
        return False
    return session is not None and getattr(session, "sub", None) is not None


class BodyLimit:
    """``app.add_middleware(BodyLimit, limits=...)``, added after the
    authentication middleware so that it runs before it."""

    def __init__(self, app: ASGIApp, limits: BodyLimits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limits.for_request(scope)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return

        received, exceeded, started = 0, False, False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise HTTPException(413, _detail(limit))
            return message

        async def guarded_send(message: Message) -> None:
            # Once the body went over, whatever the layers behind answer
            # (a 400 from a parser that wrapped our exception, a page) is
            # replaced by the one 413.
            nonlocal started
            if exceeded:
                if not started:
                    started = True
                    await _too_large(send, limit)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
            if not started:
                started = True
                await _too_large(send, limit)


def _detail(limit: int) -> str:
    return f"request body: at most {human_size(limit)} is accepted here"


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": _detail(limit)}).encode()
    # Connection: close, or the server would read (and drop) the rest of
    # what the client keeps sending.
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
