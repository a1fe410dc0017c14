"""Storage on SQLite and PostgreSQL: facts are counted once, books are
kept apart."""

from __future__ import annotations

import pytest
from sqlmodel import Session

from services.contacts import store as contacts_store
from services.feed import store as feed_store
from services.feed.domain import contributions as feed_contributions
from shared.db import database_ready, make_engine
from shared.events import utcnow


@pytest.fixture
def engine(db_url):
    engine = make_engine(db_url)
    feed_store.create_schema(engine)
    contacts_store.create_schema(engine)
    yield engine
    engine.dispose()


def test_database_readiness_names_the_dialect(engine, db_url):
    ok, dialect = database_ready(engine)
    assert ok and dialect == db_url.split(":")[0].split("+")[0]


def test_schema_creation_is_repeatable(engine):
    feed_store.create_schema(engine)
    contacts_store.create_schema(engine)


def test_redelivered_facts_count_once(engine):
    with Session(engine) as s:
        s.add(feed_store.Message(id="m1", title="t", body="b", interests=["education"],
                                 variants={"email": {"subject": "s", "body": "b"}}))
        s.commit()
        for _ in range(3):  # the same events, redelivered
            feed_store.add_once(s, feed_store.SuggestionFact(message_id="m1", volunteer_id="v1", audience_size=3))
            feed_store.add_once(s, feed_store.RelayFact(relay_id="r1", message_id="m1"),
                                feed_store.RelayQueued(relay_id="r1", channel="email", message_id="m1", queued=2))
            feed_store.add_once(s, feed_store.DeliveryFact(job_id="j1", message_id="m1", channel="email", status="delivered"))
        feed_store.add_once(s, feed_store.SuggestionFact(message_id="m1", volunteer_id="v2", audience_size=1))
        feed_store.add_once(s, feed_store.DeliveryFact(job_id="j2", message_id="m1", channel="email", status="failed"))
        counted = feed_contributions(feed_store.message_facts(s, "m1", utcnow()))
    totals = {key: sum(n for n, _ in per.values()) for key, per in counted.items()}
    assert totals == {("volunteers_suggested",): 2, ("audience",): 4, ("relays",): 1,
                      ("channel", "email", "queued"): 2, ("channel", "email", "reached"): 1,
                      ("channel", "email", "failed"): 1}
    with Session(engine) as s:
        assert feed_contributions(feed_store.message_facts(s, "unknown", utcnow())) == {}
