"""Keyed hashes of normalized addresses ("blind indexes").

Cross-volunteer rules (suppressions, one message per person, frequency
caps) compare these, never addresses. The key is campaign-wide and secret,
held only by contacts and the dispatchers, so a hash cannot be reversed by
hashing a list of known addresses."""

from __future__ import annotations

import hashlib
import hmac


class BlindIndex:
    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the address index key needs at least 32 bytes")
        self._key = key

    def _digest(self, kind: str, value: str) -> str:
        return hmac.new(self._key, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

    def email(self, normalized_email: str) -> str:
        return self._digest("email", normalized_email)

    def phone(self, e164: str) -> str:
        return self._digest("phone", e164)
