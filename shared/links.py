"""Signed, expiring links that need no login: one-click unsubscribe,
consent confirmation, invitations. The payload carries ids and hashes only,
never an address."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from typing import Any


# Far above any link or session cookie we sign (a few hundred characters);
# a longer token is not read, let alone hashed.
MAX_TOKEN_CHARS = 4096


class InvalidLink(ValueError):
    """Tampered, expired, or meant for another purpose."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class LinkSigner:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the link signing key needs at least 32 bytes")
        self._key = key

    def _mac(self, purpose: str, body: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}.{body}".encode(), hashlib.sha256).digest()[:20])

    def sign(self, purpose: str, payload: dict[str, Any], ttl_seconds: int | None = None) -> str:
        data = dict(payload)
        if ttl_seconds is not None:
            data["exp"] = int(time.time()) + ttl_seconds
        body = _b64(json.dumps(data, separators=(",", ":"), sort_keys=True).encode())
        return f"{body}.{self._mac(purpose, body)}"

    def verify(self, purpose: str, token: str) -> dict[str, Any]:
        """The payload, or InvalidLink and nothing else: a link arrives from
        anyone's mail client or a hand-edited URL (any characters, any
        length, any number of dots), and each malformed one is "not valid",
        never an error page."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            raise InvalidLink("this link is not valid")
        body, dot, mac = token.partition(".")
        if not body or not dot or not hmac.compare_digest(mac.encode(), self._mac(purpose, body).encode()):
            raise InvalidLink("this link is not valid")
        try:
            data = json.loads(_unb64(body))
        except ValueError as exc:  # bad base64, bad UTF-8 and bad JSON are all ValueErrors
            raise InvalidLink("this link is not valid") from exc
        if not isinstance(data, dict):
            raise InvalidLink("this link is not valid")
        exp = data.get("exp")
        if exp is not None and (isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp)):
            raise InvalidLink("this link is not valid")
        if exp is not None and exp < time.time():
            raise InvalidLink("this link has expired")
        return data
