"""The matcher as a running service on a real nats-server: it rebuilds its
index from JetStream when it starts, and suggests each message once."""

from __future__ import annotations

import asyncio
import json
import time

import nats
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from services.matcher.app import create_app
from services.matcher.settings import MatcherSettings
from shared.bus import Bus
from shared.catalogue import CONTACTS, FEED, MESSAGE_PUBLISHED, PROFILE_UPDATED, SUGGESTIONS_STREAM
from shared.events import InterestProfile, MessagePublished, Variants
from shared.settings import CommonSettings

MESSAGE = MessagePublished(
    message_id="m-schools", title="Écoles", body="…", interests=("education",),
    variants=Variants.model_validate({"email": {"subject": "Écoles", "body": "…"}}),
)


async def publish_profiles(nats_url: str, profiles: dict[str, dict[str, int]]) -> None:
    bus = Bus(CONTACTS, nats_url)
    await bus.connect()
    for vol, counts in profiles.items():
        profile = InterestProfile(volunteer_id=vol, audience={k: {"email": n} for k, n in counts.items()})
        await bus.publish(PROFILE_UPDATED, profile, vol, msg_id=profile.event_id)
    await bus.broker.stop()


async def suggestions(nats_url: str) -> dict[str, dict]:
    """Every suggestion stored in the stream, by volunteer."""


    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    sub = await js.subscribe("matcher.suggestions.*", stream=SUGGESTIONS_STREAM.name, ordered_consumer=True)
    found = {}
    while True:
        try:
            msg = await sub.next_msg(timeout=1)
        except TimeoutError:
            break
        found[msg.subject.rsplit(".", 1)[1]] = json.loads(msg.data)
    await nc.close()
    return found


def test_matcher_rebuilds_profiles_on_start_and_suggests_once(nats_url):
    # Profiles exist before the matcher starts; alice updates hers twice.
    asyncio.run(publish_profiles(nats_url, {"alice": {"seniors": 1}, "bob": {"transport": 2}}))
    asyncio.run(publish_profiles(nats_url, {"alice": {"education": 3, "seniors": 1}, "carol": {"education": 1}}))

    def counted() -> tuple[float, float]:  # metrics are process-wide: compare deltas
        return (
            REGISTRY.get_sample_value("maillage_matcher_messages_matched_total") or 0.0,
            REGISTRY.get_sample_value("maillage_messages_handled_total",
                                      {"service": "matcher", "subject": "feed.messages.published"}) or 0.0,
        )

    before = counted()
    app = create_app(MatcherSettings(common=CommonSettings(nats_url=nats_url)))
    with TestClient(app) as client:
        ready = client.get("/readyz").json()
        for _ in range(50):
            if ready["ready"]:
                break
            time.sleep(0.1)
            ready = client.get("/readyz").json()
        assert ready["checks"]["index"] == {"ok": True, "detail": "3 profiles"}

        async def publish_twice():
            feed = Bus(FEED, nats_url)
            await feed.connect()
            for _ in range(2):  # a retried publish: same Nats-Msg-Id
                await feed.publish(MESSAGE_PUBLISHED, MESSAGE, msg_id=MESSAGE.message_id)
            await feed.broker.stop()

        asyncio.run(publish_twice())
        found = {}
        for _ in range(50):
            found = asyncio.run(suggestions(nats_url))
            if len(found) >= 2:
                break
        assert set(found) == {"alice", "carol"}
        assert found["alice"]["matched_interests"] == ["education"]
        assert found["alice"]["audience_size"] == 3
        after = counted()
        assert (after[0] - before[0], after[1] - before[1]) == (1.0, 1.0)  # the retried publish was deduped
        assert "maillage_matcher_messages_matched_total" in client.get("/metrics").text
