"""Reading back what services put on JetStream, without consuming it
(work-queue streams included): the tests' one way to look into a stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any, NamedTuple

import nats


class Stored(NamedTuple):
    subject: str
    headers: dict[str, str]
    payload: dict[str, Any]


def stream_messages(nats_url: str, stream: str) -> list[Stored]:
    """Every message a stream holds, in stream order."""

    async def fetch() -> list[Stored]:
        nc = await nats.connect(nats_url)
        try:
            js = nc.jetstream()
            state = (await js.stream_info(stream)).state
            found = []
            for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
                try:
                    msg = await js.get_msg(stream, seq)
                except nats.js.errors.NotFoundError:  # deleted (acked from a work queue)
                    continue
                found.append(Stored(msg.subject, dict(msg.headers or {}), json.loads(msg.data)))
            return found
        finally:
            await nc.close()

    return asyncio.run(fetch())


def stream_payloads(nats_url: str, stream: str) -> list[tuple[str, dict[str, Any]]]:
    """(subject, payload) of every message a stream holds."""
    return [(m.subject, m.payload) for m in stream_messages(nats_url, stream)]


def feed_events(nats_url: str, kind: str) -> list[tuple[dict, dict]]:
    """(headers, payload) of feed.messages.<kind> in the FEED stream."""
    return [(m.headers, m.payload) for m in stream_messages(nats_url, "FEED")
            if m.subject == f"feed.messages.{kind}"]
