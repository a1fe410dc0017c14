"""The matcher under test: its settings without quiet hours, feed's and
contacts' events published as those services publish them, and the
suggestions it stored."""

from __future__ import annotations

import json

import nats
from fastapi.testclient import TestClient

from services.matcher.settings import MatcherSettings
from shared.catalogue import (
    CONTACTS,
    FEED,
    MESSAGE_PUBLISHED,
    MESSAGE_WITHDRAWN,
    PROFILE_UPDATED,
    SUGGESTIONS_STREAM,
    TAXONOMY_PUBLISHED,
)
from shared.events import (
    InterestProfile,
    MessagePublished,
    MessageWithdrawn,
    Taxonomy,
    Variants,
)
from shared.messaging import Bus
from shared.settings import CommonSettings
from tests.support.waiting import poll

VARIANTS = Variants.model_validate({"email": {"subject": "Écoles", "body": "…"}})


def message(mid: str, *interests: str, **extra) -> MessagePublished:
    return MessagePublished(message_id=mid, title=mid, body="…", interests=interests, variants=VARIANTS, **extra)


def settings(nats_url: str, **extra) -> MatcherSettings:
    extra.setdefault("quiet_start", 0)
    extra.setdefault("quiet_end", 0)  # no quiet hours unless a test wants them
    return MatcherSettings(common=CommonSettings(nats_url=nats_url), release_seconds=0.1, **extra)


async def publish_profiles(nats_url: str, profiles: dict[str, dict[str, int]], **extra) -> None:
    bus = Bus(CONTACTS, nats_url)
    await bus.connect()
    for vol, counts in profiles.items():
        profile = InterestProfile(volunteer_id=vol, audience={k: {"email": n} for k, n in counts.items()}, **extra)
        await bus.publish(PROFILE_UPDATED, profile, vol, msg_id=profile.event_id)
    await bus.broker.stop()


async def feed_publish(nats_url: str, *events: tuple[object, str]) -> None:
    """Publish as feed does: (event, Nats-Msg-Id) pairs."""
    bus = Bus(FEED, nats_url)
    await bus.connect()
    for event, msg_id in events:
        spec = {MessagePublished: MESSAGE_PUBLISHED, MessageWithdrawn: MESSAGE_WITHDRAWN,
                Taxonomy: TAXONOMY_PUBLISHED}[type(event)]
        await bus.publish(spec, event, msg_id=msg_id)
    await bus.broker.stop()


async def stored_suggestions(nats_url: str) -> list[dict]:
    """Every suggestion stored in the stream, duplicates included."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    info = await js.stream_info(SUGGESTIONS_STREAM.name)
    found = []
    if info.state.messages:
        sub = await js.subscribe("matcher.suggestions.*", stream=SUGGESTIONS_STREAM.name, ordered_consumer=True)
        while len(found) < info.state.messages:
            msg = await sub.next_msg(timeout=5)
            found.append(json.loads(msg.data))
    await nc.close()
    return found


def pairs(found: list[dict]) -> list[tuple[str, str]]:
    return sorted((s["message_id"], s["volunteer_id"]) for s in found)


def wait_ready(client: TestClient) -> dict:
    return poll(lambda: client.get("/readyz").json(), lambda r: r["ready"], what="/readyz")
