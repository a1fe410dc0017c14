"""Feed's use cases without a nats-server or HTTP: each commits its own
transaction and publishes through feed's one outbound module, here onto a
FakeBus (JetStream's dedupe kept); what the API answers for each domain
error comes from one table. The real-server paths stay in test_feed_api.py
and test_feed_schedule.py."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlmodel import select

from services.feed.api.deps import ANSWERS
from services.feed.content import channel_limits
from services.feed.domain import Actor, MessageDraft, MessagePatch, Role, State, TransitionError
from services.feed.errors import Invalid, NotFound, Refused, Unavailable
from services.feed.store import AuditEntry, create_schema
from services.feed.usecases.approve import approve
from services.feed.usecases.create_draft import create_draft
from services.feed.usecases.edit_draft import edit_draft
from services.feed.usecases.moves import load
from services.feed.usecases.publish import publish_approved, release, write_and_publish
from services.feed.usecases.taxonomy import read_taxonomy, replace_taxonomy
from services.feed.usecases.withdraw import withdraw
from shared.catalogue import FEED, MESSAGE_PUBLISHED, MESSAGE_WITHDRAWN, TAXONOMY_PUBLISHED
from shared.db import in_session, make_engine
from shared.events import TaxonomyTerm, utcnow
from shared.messaging import FakeBus
from shared.web.errors import answer

PUBLISHER = Actor(id="staff-1", name="Camille", role=Role.publisher)
LIMITS = channel_limits(x=280, bluesky=300, mastodon=500)


def draft(**changes) -> MessageDraft:
    return MessageDraft.model_validate({
        "title": "Nos écoles méritent mieux", "body": "Réunion publique le 12 décembre.",
        "interests": ["education"],
        "variants": {"email": {"subject": "Réunion sur nos écoles", "body": "Rendez-vous à 19 h."}},
        **changes})


class DownBus(FakeBus):
    """NATS away: every publication fails as the client's would."""

    async def publish(self, spec, event, *tokens, msg_id):
        raise ConnectionError("nats: no servers available")


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'feed.db'}")
    create_schema(engine)
    yield engine
    engine.dispose()


def run(coroutine):
    return asyncio.run(coroutine)


def actions(engine) -> list[str]:
    return run(in_session(engine, lambda s: [a.action for a in s.exec(select(AuditEntry).order_by(AuditEntry.id))]))


def test_a_one_step_publish_publishes_once_and_a_retry_is_the_same_message(engine):
    bus = FakeBus(FEED)
    first = run(write_and_publish(engine, bus, draft(), PUBLISHER, "key-1", LIMITS))
    again = run(write_and_publish(engine, bus, draft(title="Another title"), PUBLISHER, "key-1", LIMITS))
    assert again.id == first.id and first.state == State.published
    assert [e.message_id for e in bus.events(MESSAGE_PUBLISHED)] == [first.id]
    assert actions(engine) == ["message.create", "message.publish"]


def test_nats_away_keeps_the_message_and_the_retry_publishes_it(engine):
    with pytest.raises(Unavailable, match="retry with the same Idempotency-Key") as refused:
        run(write_and_publish(engine, DownBus(FEED), draft(), PUBLISHER, "key-2", LIMITS))
    assert answer(refused.value, ANSWERS).status_code == 503
    bus = FakeBus(FEED)
    message = run(write_and_publish(engine, bus, draft(), PUBLISHER, "key-2", LIMITS))
    assert message.state == State.published and len(bus.events(MESSAGE_PUBLISHED)) == 1


def test_editing_an_approved_draft_takes_its_approval_back(engine):
    m = run(create_draft(engine, draft(), PUBLISHER, None, LIMITS))
    run(approve(engine, m.id, PUBLISHER))
    assert run(load(engine, m.id)).approved_by == PUBLISHER.id
    run(edit_draft(engine, m.id, MessagePatch(title="Un meilleur titre"), PUBLISHER, LIMITS))
    edited = run(load(engine, m.id))
    assert (edited.state, edited.title, edited.approved_by) == (State.draft, "Un meilleur titre", None)
    with pytest.raises(Invalid) as invalid:
        run(edit_draft(engine, m.id, MessagePatch(priority=9), PUBLISHER, LIMITS))
    assert answer(invalid.value, ANSWERS).detail[0]["loc"] == ["body", "priority"]


def test_the_scheduler_releases_through_the_same_publish_use_case(engine):
    bus = FakeBus(FEED)
    m = run(write_and_publish(engine, bus, draft(publish_at=utcnow() + timedelta(hours=1)), PUBLISHER, None, LIMITS))
    assert m.state == State.scheduled and bus.events(MESSAGE_PUBLISHED) == []
    with pytest.raises(TransitionError):
        run(publish_approved(engine, bus, m.id, PUBLISHER))
    released = run(release(engine, bus, m.id))
    assert released.state == State.published and len(bus.events(MESSAGE_PUBLISHED)) == 1


def test_withdrawing_a_live_message_tells_the_volunteers(engine):
    bus = FakeBus(FEED)
    m = run(write_and_publish(engine, bus, draft(), PUBLISHER, None, LIMITS))
    assert run(withdraw(engine, bus, m.id, PUBLISHER)).state == State.withdrawn
    assert [(e.message_id, e.reason) for e in bus.events(MESSAGE_WITHDRAWN)] == [(m.id, "withdrawn")]
    with pytest.raises(TransitionError) as again:
        run(withdraw(engine, bus, m.id, PUBLISHER))
    assert answer(again.value, ANSWERS).status_code == 409


def test_the_taxonomy_is_published_once_per_change_and_binds_new_drafts(engine):
    bus = FakeBus(FEED)
    terms = [TaxonomyTerm(name="education", label_fr="Éducation", label_en="Education")]
    assert run(replace_taxonomy(engine, bus, terms, PUBLISHER)).announced
    run(replace_taxonomy(engine, bus, terms, PUBLISHER))  # the same again: nothing new
    assert len(bus.events(TAXONOMY_PUBLISHED)) == 1 and run(read_taxonomy(engine)).version == 1
    with pytest.raises(Refused) as refused:
        run(create_draft(engine, draft(interests=["sante"]), PUBLISHER, None, LIMITS))
    assert answer(refused.value, ANSWERS).detail[0]["loc"][:2] == ["body", "interests"]
    with pytest.raises(Refused):
        run(replace_taxonomy(engine, bus, terms * 2, PUBLISHER))


def test_an_unknown_message_is_a_404(engine):
    with pytest.raises(NotFound) as missing:
        run(approve(engine, "nope", PUBLISHER))
    http = answer(missing.value, ANSWERS)
    assert (http.status_code, http.detail) == (404, "no such message")
