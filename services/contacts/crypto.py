"""Encryption at rest for the contact book.

- Each volunteer has a random 256-bit data key (DEK). Contact PII (name,
  addresses, phones, handles, notes) is sealed with it, AES-256-GCM, the
  contact's id bound as associated data so a blob cannot be moved to
  another row.
- The DEK is stored only wrapped by the master key (from the environment /
  a Kubernetes Secret). Master keys are versioned so they can be rotated:
  unwrap with the version the blob names, rewrap with the current one.
- Erasing a volunteer deletes the wrapped DEK: every blob of their book is
  then noise (crypto-shredding), backups included.
- Name search uses per-volunteer HMAC tokens of words and prefixes, keyed
  from the DEK, so tokens of two books cannot be compared.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import unicodedata
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12


class DecryptionError(Exception):
    """A blob does not open with this key (wrong key, tampered, or shredded)."""


def _seal(aead: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, plaintext, aad)


def _open(aead: AESGCM, blob: bytes, aad: bytes) -> bytes:
    try:
        return aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad)
    except InvalidTag as exc:
        raise DecryptionError("blob does not open with this key") from exc


def parse_master_keys(setting: str) -> dict[int, bytes]:
    """``"2:<base64>,1:<base64>"`` (or one bare base64 key, version 1)."""
    keys = {}
    for i, part in enumerate(p.strip() for p in setting.split(",") if p.strip()):
        version, _, b64 = part.rpartition(":") if ":" in part else ("1", "", part)
        try:
            key = base64.b64decode(b64, validate=True)
        except ValueError as exc:
            raise ValueError(f"master key {i + 1}: not base64 ({exc})") from exc
        if len(key) != 32:
            raise ValueError(f"master key {i + 1}: expected 32 bytes (base64), got {len(key)}")
        keys[int(version)] = key
    if not keys:
        raise ValueError("no master key")
    return keys


class MasterKey:
    def __init__(self, keys: dict[int, bytes]) -> None:
        self.current = max(keys)
        self._aeads = {v: AESGCM(k) for v, k in keys.items()}

    @classmethod
    def from_setting(cls, setting: str) -> MasterKey:
        return cls(parse_master_keys(setting))

    def wrap(self, dek: bytes, volunteer_id: str) -> tuple[int, bytes]:
        return self.current, _seal(self._aeads[self.current], dek, f"dek:{volunteer_id}".encode())

    def unwrap(self, version: int, wrapped: bytes, volunteer_id: str) -> bytes:
        aead = self._aeads.get(version)
        if aead is None:
            raise DecryptionError(f"master key version {version} is not configured")
        return _open(aead, wrapped, f"dek:{volunteer_id}".encode())


def new_data_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def fold(text: str) -> str:
    """Lowercase without accents: "Hélène" and "helene" search alike."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    return [w for w in "".join(c if c.isalnum() else " " for c in fold(text)).split() if w]


class BookCipher:
    """One volunteer's key, opened: seals and opens their contacts' PII."""

    def __init__(self, dek: bytes, volunteer_id: str) -> None:
        self.volunteer_id = volunteer_id
        self._aead = AESGCM(dek)
        self._search_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"maillage-search"
        ).derive(dek)

    def _aad(self, record_id: str) -> bytes:
        return f"{self.volunteer_id}:{record_id}".encode()

    def seal(self, record_id: str, data: dict[str, Any]) -> bytes:
        return _seal(self._aead, json.dumps(data, separators=(",", ":")).encode(), self._aad(record_id))

    def open(self, record_id: str, blob: bytes) -> dict[str, Any]:
        return json.loads(_open(self._aead, blob, self._aad(record_id)))

    def token(self, word: str) -> str:
        return hmac.new(self._search_key, word.encode(), hashlib.sha256).hexdigest()[:20]

    def search_tokens(self, *texts: str, min_prefix: int = 2) -> set[str]:
        """Tokens for every word of ``texts`` and each of its prefixes."""
        out: set[str] = set()
        for text in texts:
            for w in words(text):
                out.update(self.token(w[:n]) for n in range(min(min_prefix, len(w)), len(w) + 1))
        return out

    def query_tokens(self, query: str) -> list[str]:
        """One token per word of a search query (each word a prefix)."""
        return [self.token(w) for w in words(query)]
