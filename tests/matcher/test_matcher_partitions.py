"""Two matcher replicas split the volunteers between them: against one real
nats-server, the union of their suggestions is exactly the matching
volunteers, each once — also when one replica was down while a message came."""

from __future__ import annotations

import asyncio
from contextlib import ExitStack

from fastapi.testclient import TestClient

from services.matcher.app import create_app
from services.matcher.domain import partition_of
from shared.catalogue import CONTACTS, PROFILE_UPDATED
from shared.events import InterestProfile
from shared.messaging import Bus
from tests.support.matcher import feed_publish, message, settings, stored_suggestions, wait_ready
from tests.support.waiting import poll

VOLUNTEERS = [f"vol-{i:03d}" for i in range(200)]


def profile(i: int, vol: str) -> InterestProfile:
    audience = {"education": {"email": 1 + i % 4}} if i % 3 else {"transport": {"email": 2}}
    return InterestProfile(volunteer_id=vol, audience=audience,
                           regions={"idf": 1 + i % 4} if i % 2 == 0 else {"bretagne": 2})


def expected() -> set[str]:
    return {vol for i, vol in enumerate(VOLUNTEERS) if i % 3 and i % 2 == 0}


async def publish_all(nats_url: str) -> None:
    bus = Bus(CONTACTS, nats_url)
    await bus.connect()
    await bus.publish_many(PROFILE_UPDATED, [(p, (p.volunteer_id,), p.event_id)
                                             for p in (profile(i, v) for i, v in enumerate(VOLUNTEERS))])
    await bus.broker.stop()


def by_message(nats_url: str, message_id: str) -> list[str]:
    return sorted(s["volunteer_id"] for s in asyncio.run(stored_suggestions(nats_url))
                  if s["message_id"] == message_id)


def test_two_replicas_suggest_to_every_matching_volunteer_exactly_once(nats_url):
    asyncio.run(publish_all(nats_url))
    want = expected()
    assert 50 < len(want) < 100
    apps = [create_app(settings(nats_url, partition=i, partitions=2)) for i in range(2)]
    with ExitStack() as replica0, ExitStack() as replica1:
        clients = [replica0.enter_context(TestClient(apps[0])), replica1.enter_context(TestClient(apps[1]))]
        for client in clients:
            wait_ready(client)
        indexes = [app.state.matcher.index.volunteers() for app in apps]
        assert indexes[0].isdisjoint(indexes[1]) and indexes[0] | indexes[1] == set(VOLUNTEERS)
        assert all(partition_of(v, 2) == i for i, owned in enumerate(indexes) for v in owned)
        assert {app.state.matcher_handlers.durable for app in apps} == {"matcher-messages-0-of-2", "matcher-messages-1-of-2"}

        asyncio.run(feed_publish(nats_url, (message("m1", "education", regions=("idf",)), "m1")))
        found = poll(lambda: by_message(nats_url, "m1"), lambda f: len(f) >= len(want), what="m1's suggestions")
        assert found == sorted(want)  # no one missed, no one twice
        assert {v for v in found if partition_of(v, 2) == 0} and {v for v in found if partition_of(v, 2) == 1}

        # replica 1 dies; a message comes; it restarts: its durable consumer kept the
        # message, it replays its profiles and catches up
        replica1.close()
        asyncio.run(feed_publish(nats_url, (message("m2", "education", regions=("idf",)), "m2")))
        poll(lambda: by_message(nats_url, "m2"), lambda f: f and all(partition_of(v, 2) == 0 for v in f)
                 and len(f) == len({v for v in want if partition_of(v, 2) == 0}), what="replica 0's part of m2")
        with TestClient(create_app(settings(nats_url, partition=1, partitions=2))) as restarted:
            wait_ready(restarted)
            found = poll(lambda: by_message(nats_url, "m2"), lambda f: len(f) >= len(want), what="all of m2")
            assert found == sorted(want)
        assert by_message(nats_url, "m1") == sorted(want)  # m1 was not suggested again
