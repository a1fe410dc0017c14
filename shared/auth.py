"""Bearer tokens: only their SHA-256 is ever stored or compared."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Depends, HTTPException, status
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


def unauthorized(detail: str = "missing or invalid bearer token") -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def bearer_token(credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> str:
    """The token from ``Authorization: Bearer …``, or a 401."""
    if credentials is None or not credentials.credentials.strip():
        raise unauthorized()
    return credentials.credentials.strip()
