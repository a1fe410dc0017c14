"""Feed's clock, on real NATS and a real database: a scheduled message
publishes itself at its embargo even when feed was stopped in between (the
app is built twice on the same database), the stored taxonomy is announced
again on start, an expired message is withdrawn, and a message withdrawn
before its embargo never goes out."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from shared.catalogue import TAXONOMY_STREAM
from tests.support.feed import ADMIN, later, message, running_feed
from tests.support.servers import start_nats
from tests.support.streams import feed_events, stream_messages
from tests.support.waiting import poll

TERMS = [{"name": "education", "label_fr": "Éducation", "label_en": "Education"}]



def test_a_scheduled_message_publishes_itself_after_a_restart(nats_url: str, db_url: str):
    with running_feed(nats_url, db_url) as feed:
        r = feed.post("/messages", headers=ADMIN, json=message(publish_at=later(2.5)))
        assert r.status_code == 201, r.text
        scheduled = r.json()
        assert (scheduled["state"], scheduled["published_at"]) == ("scheduled", None)
    # feed is down; nothing went out
    assert feed_events(nats_url, "published") == []

    with running_feed(nats_url, db_url) as feed:
        [(headers, event)] = poll(lambda: feed_events(nats_url, "published"), lambda found: len(found) == 1,
                                  timeout=15, what="the scheduled publication")
        assert headers["Nats-Msg-Id"] == scheduled["id"] and event["message_id"] == scheduled["id"]
        embargo = datetime.fromisoformat(scheduled["publish_at"])
        assert datetime.fromisoformat(event["occurred_at"]) >= embargo, "published before its embargo"
        now = poll(lambda: feed.get(f"/messages/{scheduled['id']}", headers=ADMIN).json(),
                   lambda m: m["state"] == "published", timeout=5, what="the message to be published")
        assert datetime.fromisoformat(now["published_at"]) >= embargo
        [release] = feed.get("/audit", headers=ADMIN, params={"action": "message.release"}).json()["items"]
        assert (release["actor_id"], release["target"]) == ("system:scheduler", f"message:{scheduled['id']}")
        time.sleep(0.5)
        assert len(feed_events(nats_url, "published")) == 1  # once, whatever the ticks


def test_the_stored_taxonomy_is_announced_on_start(nats_url: str, db_url: str, tmp_path: Path):
    """Feed started against a NATS that lost its streams (a new cluster, a
    wiped volume) tells it the taxonomy again."""
    with running_feed(nats_url, db_url) as feed:
        assert feed.put("/taxonomy", headers=ADMIN, json={"terms": TERMS}).status_code == 200
    fresh = start_nats(tmp_path / "fresh-jetstream")
    try:
        with running_feed(fresh.url, db_url):
            [(_, headers, event)] = poll(lambda: stream_messages(fresh.url, TAXONOMY_STREAM.name), bool,
                                         timeout=10, what="the taxonomy announced on start")
        assert [t["name"] for t in event["terms"]] == ["education"]
        [(_, first_headers, _)] = stream_messages(nats_url, TAXONOMY_STREAM.name)
        assert headers["Nats-Msg-Id"] == first_headers["Nats-Msg-Id"]  # the same content, the same id
    finally:
        fresh.process.terminate()
        fresh.process.wait(10)


def test_expiry_withdraws_and_an_early_withdrawal_cancels(nats_url: str, db_url: str):
    with running_feed(nats_url, db_url) as feed:
        expiring = feed.post("/messages", headers=ADMIN, json=message(expires_at=later(1.5))).json()
        assert expiring["state"] == "published"
        cancelled = feed.post("/messages", headers=ADMIN, json=message(title="Annulé", publish_at=later(1))).json()
        assert cancelled["state"] == "scheduled"
        r = feed.post(f"/messages/{cancelled['id']}/withdraw", headers=ADMIN)
        assert r.status_code == 200 and r.json()["state"] == "withdrawn", r.text

        gone = poll(lambda: feed.get(f"/messages/{expiring['id']}", headers=ADMIN).json(),
                    lambda m: m["state"] == "expired", timeout=10, what="the expiry")
        assert gone["withdrawn_reason"] == "expired"
        [(headers, event)] = feed_events(nats_url, "withdrawn")
        assert (event["message_id"], event["reason"]) == (expiring["id"], "expired")
        assert headers["Nats-Msg-Id"] == f"{expiring['id']}:withdrawn"
        time.sleep(1.0)  # past the cancelled message's embargo: it stays unpublished
        assert [e["message_id"] for _, e in feed_events(nats_url, "published")] == [expiring["id"]]
        assert feed.get(f"/messages/{cancelled['id']}", headers=ADMIN).json()["state"] == "withdrawn"
