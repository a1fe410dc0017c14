"""The tests' transit keys: one per channel, as in production. contacts
gets them all (``transit_keys``), each dispatcher only its own."""

from __future__ import annotations

import base64
from typing import Any

from pydantic import SecretStr

from shared.events import Channel, EmailJob
from shared.sealed import TransitSealer, open_email

TRANSIT_KEYS = {channel: base64.b64encode(channel.value[0].upper().encode() * 32).decode() for channel in Channel}
CONTACTS_TRANSIT_KEYS = ",".join(f"{channel.value}:{key}" for channel, key in TRANSIT_KEYS.items())
EMAIL_SEALER = TransitSealer.from_secret(Channel.email, SecretStr(TRANSIT_KEYS[Channel.email]))


def opened_job(payload: dict[str, Any]) -> dict[str, Any]:
    """An email job read off the stream, opened as dispatch-email opens it
    (the email key): its clear part and its sealed content, as one dict."""
    opened = open_email(EmailJob.model_validate(payload), EMAIL_SEALER)
    return {**opened.model_dump(mode="json", exclude={"smtp_account"}),
            "smtp_account": opened.smtp_account.transit() if opened.smtp_account else None}
