"""The tests' transit keys: one per channel, as in production. contacts
gets them all (``transit_keys``), each dispatcher only its own."""

from __future__ import annotations

import base64

from shared.events import Channel

TRANSIT_KEYS = {channel: base64.b64encode(channel.value[0].upper().encode() * 32).decode() for channel in Channel}
CONTACTS_TRANSIT_KEYS = ",".join(f"{channel.value}:{key}" for channel, key in TRANSIT_KEYS.items())
