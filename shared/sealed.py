"""Secrets in transit between contacts and the social dispatchers.

A volunteer's network credentials are stored in contacts under their own
data key; a social job carries them sealed again with a key only contacts
and the dispatchers share (AES-256-GCM, from a Kubernetes Secret like the
master key). The job id is bound as associated data, so a sealed blob
cannot be lifted into another job. JetStream stores the job on disk: it
holds only the sealed form."""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

NONCE_BYTES = 12


class SealError(Exception):
    """The blob does not open with this key for this job (wrong key, another job, tampered)."""


def key_from_secret(secret: SecretStr, setting: str = "credentials_key") -> bytes:
    """A base64 32-byte key from a setting; a bad one says which setting."""
    try:
        key = base64.b64decode(secret.get_secret_value(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"{setting}: not base64") from exc
    if len(key) != 32:
        raise ValueError(f"{setting}: expected 32 bytes (base64), got {len(key)}")
    return key


class TransitSealer:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def from_secret(cls, secret: SecretStr, setting: str = "credentials_key") -> TransitSealer:
        return cls(key_from_secret(secret, setting))

    def seal(self, job_id: str, data: dict[str, Any]) -> str:
        nonce = os.urandom(NONCE_BYTES)
        blob = nonce + self._aead.encrypt(nonce, json.dumps(data).encode(), job_id.encode())
        return base64.b64encode(blob).decode()

    def open(self, job_id: str, sealed: str) -> dict[str, Any]:
        try:
            blob = base64.b64decode(sealed, validate=True)
            return json.loads(self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], job_id.encode()))
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise SealError("credentials do not open with this key for this job") from exc
