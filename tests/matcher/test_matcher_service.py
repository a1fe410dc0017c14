"""The matcher as a running service on a real nats-server: it rebuilds its
index and its queues from JetStream when it starts, suggests each message
once, paces suggestions through quiet hours, and drops withdrawn ones."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import nats
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from services.matcher.app import create_app
from shared.events import (
    MessagePublished,
    MessageWithdrawn,
    Taxonomy,
    TaxonomyTerm,
    utcnow,
)
from tests.support.matcher import (
    VARIANTS,
    feed_publish,
    message,
    pairs,
    publish_profiles,
    settings,
    stored_suggestions,
    wait_ready,
)
from tests.support.waiting import poll

MESSAGE = MessagePublished(message_id="m-schools", title="Écoles", body="…", interests=("education",),
                           variants=VARIANTS)


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Clock:
    """Real time, shifted by the test."""

    def __init__(self) -> None:
        self.shift = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.shift


def test_matcher_rebuilds_profiles_on_start_and_suggests_once(nats_url):
    # Profiles exist before the matcher starts; alice updates hers twice.
    asyncio.run(publish_profiles(nats_url, {"alice": {"seniors": 1}, "bob": {"transport": 2}}))
    asyncio.run(publish_profiles(nats_url, {"alice": {"education": 3, "seniors": 1}, "carol": {"education": 1}}))
    matched = metric("maillage_matcher_messages_matched_total")
    duplicates = metric("maillage_matcher_rejected_total", reason="duplicate_message")

    with TestClient(create_app(settings(nats_url))) as client:
        ready = wait_ready(client)
        assert ready["checks"]["index"] == {"ok": True, "detail": "3 profiles"}
        assert ready["checks"]["queue"] == {"ok": True, "detail": "0 waiting"}

        # a retried publish (same Nats-Msg-Id), then the same message published again
        # later under another id: one suggestion per volunteer all the same
        asyncio.run(feed_publish(nats_url, (MESSAGE, MESSAGE.message_id), (MESSAGE, MESSAGE.message_id),
                                 (MESSAGE, "republished-by-mistake")))
        poll(lambda: metric("maillage_matcher_rejected_total", reason="duplicate_message"),
                 lambda v: v == duplicates + 1, what="the duplicate to be refused")
        found = asyncio.run(stored_suggestions(nats_url))
        assert pairs(found) == [("m-schools", "alice"), ("m-schools", "carol")]
        alice = next(s for s in found if s["volunteer_id"] == "alice")
        assert alice["matched_interests"] == ["education"]
        assert (alice["audience_size"], alice["score"]) == (3, 3.0)
        assert metric("maillage_matcher_messages_matched_total") == matched + 1
        assert "maillage_matcher_suggestions_total" in client.get("/metrics").text


def test_targeted_message_reaches_only_volunteers_with_contacts_in_its_regions(nats_url):
    asyncio.run(publish_profiles(nats_url, {"alice": {"education": 3}}, regions={"bretagne": 3}))
    asyncio.run(publish_profiles(nats_url, {"bob": {"education": 5}}, regions={"idf": 5}))
    asyncio.run(publish_profiles(nats_url, {"carol": {"transport": 2}}, regions={"bretagne": 2}))
    with TestClient(create_app(settings(nats_url))) as client:
        wait_ready(client)
        asyncio.run(feed_publish(nats_url, (message("breizh", regions=("bretagne",), priority=3), "breizh")))
        found = poll(lambda: asyncio.run(stored_suggestions(nats_url)), lambda f: len(f) >= 2)
        assert pairs(found) == [("breizh", "alice"), ("breizh", "carol")]  # broad, but only in Bretagne
        assert {s["volunteer_id"]: s["score"] for s in found} == {"alice": 12.0, "carol": 8.0}


def test_quiet_hours_queue_survives_a_restart_withdrawals_empty_it_and_nothing_goes_out_twice(nats_url):
    # quiet hours around the current time in Paris, whatever time the suite runs
    hour = datetime.now(ZoneInfo("Europe/Paris")).hour
    quiet = settings(nats_url, quiet_start=hour, quiet_end=(hour + 2) % 24)
    clock = Clock()
    asyncio.run(publish_profiles(nats_url, {"alice": {"education": 3}, "bob": {"education": 1}}))
    queued = metric("maillage_matcher_suggestions_queued_total")
    dropped = metric("maillage_matcher_suggestions_dropped_total", reason="withdrawn")

    with TestClient(create_app(quiet, clock=clock)) as client:
        wait_ready(client)
        asyncio.run(feed_publish(nats_url, (message("m1", "education"), "m1"),
                                 (message("m2", "education", priority=2), "m2")))
        poll(lambda: client.get("/readyz").json()["checks"]["queue"]["detail"], lambda d: d == "4 waiting")
        assert metric("maillage_matcher_suggestions_queued_total") == queued + 4

    # withdrawn while no matcher runs; the restarted one rebuilds its queues from FEED
    asyncio.run(feed_publish(nats_url, (MessageWithdrawn(message_id="m1"), "m1:withdrawn")))
    with TestClient(create_app(quiet, clock=clock)) as client:
        ready = wait_ready(client)
        assert ready["checks"]["queue"]["detail"] == "2 waiting"
        matcher = client.app.state.matcher
        assert [p.message_id for p in matcher.queue.waiting("alice")] == ["m2"]

        # a withdrawal while it runs empties the queue of that message
        asyncio.run(feed_publish(nats_url, (message("m3", "education"), "m3")))
        poll(lambda: len(matcher.queue), lambda n: n == 4, what="m3 to wait")
        asyncio.run(feed_publish(nats_url, (MessageWithdrawn(message_id="m3"), "m3:withdrawn")))
        poll(lambda: len(matcher.queue), lambda n: n == 2, what="m3 to leave the queues")
        assert metric("maillage_matcher_suggestions_dropped_total", reason="withdrawn") == dropped + 2
        assert asyncio.run(stored_suggestions(nats_url)) == []

        clock.shift = timedelta(hours=3)  # the quiet hours are over
        found = poll(lambda: asyncio.run(stored_suggestions(nats_url)), lambda f: len(f) >= 2)
        assert pairs(found) == [("m2", "alice"), ("m2", "bob")]

    # a third start, after the release: it rebuilds the same state and publishes nothing again
    with TestClient(create_app(quiet, clock=clock)) as client:
        assert wait_ready(client)["checks"]["queue"]["detail"] == "0 waiting"
        time.sleep(0.3)
    assert pairs(asyncio.run(stored_suggestions(nats_url))) == [("m2", "alice"), ("m2", "bob")]


def test_a_release_no_replica_was_up_for_goes_out_late_when_the_matcher_returns(nats_url):
    hour = datetime.now(ZoneInfo("Europe/Paris")).hour
    quiet = settings(nats_url, quiet_start=hour, quiet_end=(hour + 2) % 24)
    clock = Clock()
    asyncio.run(publish_profiles(nats_url, {"alice": {"education": 3}}))
    with TestClient(create_app(quiet, clock=clock)) as client:
        wait_ready(client)
        asyncio.run(feed_publish(nats_url, (message("night", "education"), "night")))
        poll(lambda: len(client.app.state.matcher.queue), lambda n: n == 1, what="the suggestion to wait")

    # Down until an hour after the quiet hours ended (far past the dedupe window):
    # the watermark says that opening never ran, so the restart releases it.
    clock.shift = timedelta(hours=3)
    with TestClient(create_app(quiet, clock=clock)) as client:
        assert wait_ready(client)["checks"]["queue"]["detail"] == "0 waiting"
        found = poll(lambda: asyncio.run(stored_suggestions(nats_url)), lambda f: len(f) >= 1)
        assert pairs(found) == [("night", "alice")]
        assert client.app.state.matcher.released_until >= utcnow() + timedelta(hours=2)


def test_the_daily_cap_holds_lower_priority_suggestions_back(nats_url):
    asyncio.run(publish_profiles(nats_url, {"alice": {"education": 3}}))
    with TestClient(create_app(settings(nats_url, daily_cap=2))) as client:
        wait_ready(client)
        asyncio.run(feed_publish(nats_url, *[(message(f"m{i}", "education", priority=p), f"m{i}")
                                             for i, p in enumerate((1, 1, 3))]))
        poll(lambda: len(client.app.state.matcher.queue), lambda n: n == 1, what="one to wait")
        found = asyncio.run(stored_suggestions(nats_url))
        assert pairs(found) == [("m0", "alice"), ("m1", "alice")]
        assert [p.message_id for p in client.app.state.matcher.queue.waiting("alice")] == ["m2"]


def test_bad_profiles_are_trimmed_or_counted_and_nothing_crashes(nats_url):
    taxonomy = Taxonomy(terms=tuple(TaxonomyTerm(name=n, label_fr=n, label_en=n) for n in ("education", "transport")))
    asyncio.run(feed_publish(nats_url, (taxonomy, "taxonomy-1")))
    asyncio.run(publish_profiles(nats_url, {"alice": {"education": 2, "astrology": 5}}))
    unknown = metric("maillage_matcher_rejected_total", reason="unknown_interest")
    stale = metric("maillage_matcher_rejected_total", reason="out_of_order_profile")
    invalid = metric("maillage_messages_failed_total", service="matcher", subject="contacts.profiles.*",
                     reason="invalid_payload")

    async def garbage_then_an_old_profile() -> None:
        nc = await nats.connect(nats_url)
        await nc.jetstream().publish("contacts.profiles.mallory", b'{"volunteer_id": 42}')
        await nc.close()
        await publish_profiles(nats_url, {"alice": {"transport": 9}}, occurred_at=utcnow() - timedelta(days=1))

    with TestClient(create_app(settings(nats_url))) as client:
        ready = wait_ready(client)
        assert ready["checks"]["taxonomy"] == {"ok": True, "detail": "2 terms"}
        assert metric("maillage_matcher_rejected_total", reason="unknown_interest") == unknown + 1
        asyncio.run(garbage_then_an_old_profile())
        poll(lambda: metric("maillage_matcher_rejected_total", reason="out_of_order_profile"),
                 lambda v: v == stale + 1, what="the old profile to be ignored")
        assert metric("maillage_messages_failed_total", service="matcher", subject="contacts.profiles.*",
                      reason="invalid_payload") == invalid + 1
        asyncio.run(feed_publish(nats_url, (message("stars", "astrology"), "stars"),
                                 (message("schools", "education"), "schools")))
        found = poll(lambda: asyncio.run(stored_suggestions(nats_url)), lambda f: len(f) >= 1)
        time.sleep(0.3)
        assert pairs(asyncio.run(stored_suggestions(nats_url))) == [("schools", "alice")]
        assert found[0]["audience_size"] == 2
        assert client.get("/healthz").status_code == 200
