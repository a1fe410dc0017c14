"""Bearer tokens: only their SHA-256 is ever stored or compared."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

# auto_error=False: we answer 401 with WWW-Authenticate ourselves, whatever
# the FastAPI version would do on a missing header.
_bearer = HTTPBearer(auto_error=False)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def same_token(token: str, token_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), token_hash)


UNAUTHORIZED = "missing or invalid bearer token"
CHALLENGE = {"WWW-Authenticate": "Bearer"}

# Open to anyone: probes, metrics and the API descriptions. Everything else,
# unknown paths included, needs a valid token.
PUBLIC_PATHS = frozenset(
    {"/healthz", "/readyz", "/metrics", "/asyncapi.json", "/openapi.json", "/docs",
     "/docs/oauth2-redirect", "/redoc"}
)


@dataclass(frozen=True)
class Principal:
    """Who is calling: a role, and the account row for roles that have one."""

    role: str
    account: Any = None


Authenticator = Callable[[str], Awaitable[Principal | None]]


async def nobody(_token: str) -> None:
    return None


def unauthorized(detail: str = UNAUTHORIZED) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers=CHALLENGE)


def authenticate_first(app: FastAPI, authenticate: Authenticator, public_prefixes: tuple[str, ...] = ()) -> None:
    """Authenticate before FastAPI reads the body, so an anonymous caller
    learns nothing (not even whether its JSON parses) and gets a 401.
    ``public_prefixes``: routes that carry their own proof (signed links,
    invite codes)."""

    @app.middleware("http")
    async def _authenticate(request: Request, call_next):
        path = request.url.path
        if path in PUBLIC_PATHS or path.startswith(public_prefixes):
            return await call_next(request)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        principal = await authenticate(token) if scheme.lower() == "bearer" and token else None
        if principal is None:
            return JSONResponse({"detail": UNAUTHORIZED}, status_code=401, headers=CHALLENGE)
        request.state.principal = principal
        return await call_next(request)


def require(role: str) -> Callable[..., Principal]:
    """A route dependency: the caller authenticated with ``role``. The
    bearer scheme appears in the OpenAPI docs through it."""

    def dependency(request: Request, _token: str = Depends(bearer_token)) -> Principal:
        principal = getattr(request.state, "principal", None)
        if principal is None or principal.role != role:
            raise unauthorized()
        return principal

    return dependency


def bearer_token(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
    """The token from ``Authorization: Bearer …``, or a 401."""
    if credentials is None or not credentials.credentials.strip():
        raise unauthorized()
    return credentials.credentials.strip()
