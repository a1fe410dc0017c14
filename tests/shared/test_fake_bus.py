"""FakeBus keeps the Bus's rules (catalogue roles, models, tokens, dedupe)
and settles a delivered message as the real consumers do, so handler
tests need no nats-server; one handler of each service, run on it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import SecretStr
from sqlmodel import Session, select

from services.contacts import handlers as contacts_handlers
from services.contacts import store as contacts_store
from services.dispatch.withdrawals import WithdrawnMessages
from services.feed import handlers as feed_handlers
from services.feed import store as feed_store
from shared.catalogue import (
    CONTACTS,
    DISPATCH_EMAIL,
    EMAIL_BOUNCE,
    FEED,
    MATCHER,
    MESSAGE_WITHDRAWN,
    PROFILE_UPDATED,
    RELAY_REQUESTED,
    SUPPRESSION_ADDED,
)
from shared.db import make_engine
from shared.events import BounceReported, Channel, InterestProfile, MessageWithdrawn, RelayRequested
from shared.messaging import FakeBus, UndeclaredSubject, redelivery_delay

HASH = "ab" * 32


def profile(volunteer_id: str = "vol-1") -> InterestProfile:
    return InterestProfile(volunteer_id=volunteer_id, audience={"education": {Channel.email: 3}})


@pytest.fixture
def engine(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'fake-bus.db'}")
    feed_store.create_schema(engine)
    contacts_store.create_schema(engine)
    yield engine
    engine.dispose()


# -- the Bus's rules ------------------------------------------------------------------------


async def test_roles_models_and_tokens_are_checked_as_on_the_real_bus():
    bus = FakeBus(MATCHER)
    with pytest.raises(UndeclaredSubject):
        await bus.publish(PROFILE_UPDATED, profile(), "vol-1", msg_id="x")  # contacts produces it
    with pytest.raises(UndeclaredSubject):
        bus.subscriber(RELAY_REQUESTED, durable="nope")  # feed consumes it
    contacts = FakeBus(CONTACTS)
    with pytest.raises(TypeError):
        await contacts.publish(PROFILE_UPDATED, MessageWithdrawn(message_id="m"), "vol-1", msg_id="x")
    with pytest.raises(ValueError):
        await contacts.publish(PROFILE_UPDATED, profile(), "vol.1", msg_id="x")
    assert contacts.published == []


async def test_a_publish_is_recorded_once_per_msg_id():
    bus = FakeBus(CONTACTS)
    event = profile()
    for _ in range(2):  # a retried publish, as JetStream's dedupe window sees it
        await bus.publish(PROFILE_UPDATED, event, "vol-1", msg_id=event.event_id)
    assert [(p.subject, p.msg_id) for p in bus.published] == [("contacts.profiles.vol-1", event.event_id)]
    assert bus.events(PROFILE_UPDATED) == [event]
    assert await bus.stored_messages(PROFILE_UPDATED) == 1


# -- settling, as settle() does for both consumer paths ----------------------------------------


async def test_delivered_messages_are_acked_nacked_with_backoff_or_terminated():
    bus = FakeBus(MATCHER)
    seen, fail = [], {"now": False}

    @bus.subscriber(PROFILE_UPDATED, durable="matcher-profiles")
    async def handle(event: InterestProfile, msg) -> None:
        if fail["now"]:
            raise RuntimeError("store down")
        seen.append((event.volunteer_id, msg.raw_message.metadata.num_delivered))

    [ok] = await bus.deliver(PROFILE_UPDATED, profile(), "vol-1")
    assert ok.settled == "ack" and seen == [("vol-1", 1)]
    [bad] = await bus.deliver(PROFILE_UPDATED, {"volunteer_id": "vol-2", "audience": "nope"}, "vol-2")
    assert bad.settled == "term" and len(seen) == 1
    fail["now"] = True
    [retried] = await bus.deliver(PROFILE_UPDATED, profile(), "vol-1", num_delivered=3)
    assert retried.settled == "nak" and retried.delay == redelivery_delay(3)


async def test_a_handler_that_settles_itself_is_not_settled_again_and_a_replay_is_never_settled():
    bus = FakeBus(DISPATCH_EMAIL)

    async def defer(event, msg) -> None:  # a pull consumer's handler gets nats-py's Msg
        await msg.nak(delay=42)

    bus.pull_consumer(MESSAGE_WITHDRAWN, defer, durable="d")
    [msg] = await bus.deliver(MESSAGE_WITHDRAWN, MessageWithdrawn(message_id="m-1"))
    assert msg.settled == "nak" and msg.delay == 42

    replayed = FakeBus(DISPATCH_EMAIL)
    withdrawn = WithdrawnMessages(replayed)  # an ordered replay: no acks
    await withdrawn.replay.prepare()
    [msg] = await replayed.deliver(MESSAGE_WITHDRAWN, MessageWithdrawn(message_id="m-1"))
    assert msg.settled is None and await withdrawn.contains("m-1")


# -- one handler per service, without nats-server ----------------------------------------------


async def test_feed_counts_a_relay_once_however_often_it_is_delivered(engine):
    bus = FakeBus(FEED)
    feed_handlers.register(bus, engine)
    relay = RelayRequested(relay_id="r-1", volunteer_id="vol-1", message_id="m-1", jobs_queued={Channel.email: 2})
    for attempt in (1, 2):
        [msg] = await bus.deliver(RELAY_REQUESTED, relay, num_delivered=attempt)
        assert msg.settled == "ack"
    with Session(engine) as s:
        assert [(r.relay_id, r.message_id) for r in s.exec(select(feed_store.RelayFact))] == [("r-1", "m-1")]


async def test_contacts_suppresses_a_bounced_address_and_tells_the_dispatchers(engine):
    bus = FakeBus(CONTACTS)
    contacts_handlers.register(bus, engine, SimpleNamespace(engine=engine))
    [msg] = await bus.deliver(EMAIL_BOUNCE, BounceReported(job_id="j-1", address_hash=HASH, status="5.1.1"))
    assert msg.settled == "ack"
    assert [(e.address_hash, e.reason) for e in bus.events(SUPPRESSION_ADDED)] == [(HASH, "bounce")]
    with Session(engine) as s:
        assert s.get(contacts_store.Suppression, HASH).reason == "bounce"


async def test_the_matcher_indexes_a_profile_from_its_replay():
    from services.matcher.handlers import Handlers
    from services.matcher.outbound import Outbound
    from services.matcher.settings import MatcherSettings
    from services.matcher.store import MatcherState

    bus = FakeBus(MATCHER)
    state = MatcherState.for_settings(MatcherSettings(_env_file=None))
    handlers = Handlers(bus, state, Outbound(bus), release_seconds=1)
    await handlers.profiles.prepare()
    await bus.deliver(PROFILE_UPDATED, profile("vol-9"), "vol-9")
    assert len(state.index) == 1 and await handlers.profiles.ready() == (True, "1 profiles")


async def test_a_social_dispatcher_learns_a_withdrawal():
    from services.dispatch.social.app import SocialDispatcher
    from services.dispatch.social.settings import MastodonDispatchSettings
    from shared.catalogue import DISPATCH_MASTODON, MASTODON_JOB, MASTODON_RESULT
    from tests.support.transit_keys import TRANSIT_KEYS

    bus = FakeBus(DISPATCH_MASTODON)
    settings = MastodonDispatchSettings(_env_file=None, transit_key=SecretStr(TRANSIT_KEYS[Channel.mastodon]))
    dispatcher = SocialDispatcher(bus, settings, SimpleNamespace(channel=Channel.mastodon), MASTODON_JOB,
                                  MASTODON_RESULT)
    await dispatcher.withdrawn.replay.prepare()
    await bus.deliver(MESSAGE_WITHDRAWN, MessageWithdrawn(message_id="m-7"))
    assert await dispatcher.withdrawn.contains("m-7")
