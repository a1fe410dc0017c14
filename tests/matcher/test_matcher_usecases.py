"""The matcher's use cases without a broker: what each one publishes through
the outbound module, and what it leaves in the store."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

from services.matcher.domain import Partition, Planner, ProfileIndex, Schedule, SuggestionQueue, suggestion_id
from services.matcher.outbound import Outbound
from services.matcher.store import MatcherState
from services.matcher.usecases.index_profile import index_profile
from services.matcher.usecases.match_message import match_message
from services.matcher.usecases.rebuild import rebuild
from services.matcher.usecases.release_pass import release_pass
from services.matcher.usecases.withdraw_message import withdraw_message
from shared.catalogue import MATCHER, RELEASE_WATERMARK, SUGGESTION_MADE
from shared.events import InterestProfile, MessagePublished, MessageWithdrawn, Variants
from shared.messaging import FakeBus

PARIS = ZoneInfo("Europe/Paris")
VARIANTS = Variants.model_validate({"email": {"subject": "s", "body": "b"}})


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=PARIS)


class Broker(FakeBus):
    """The FakeBus, with every publishing attempt counted (its ``published``
    holds what JetStream would keep, deduplicated) and ``fail`` to refuse
    the next batch as a broker gone away would."""

    def __init__(self) -> None:
        super().__init__(MATCHER)
        self.attempts: list[str] = []
        self.fail = False

    async def publish_many(self, spec, items) -> int:
        if self.fail:
            self.fail = False
            raise ConnectionError("no broker")
        items = list(items)
        self.attempts += [msg_id for _, _, msg_id in items]
        return await super().publish_many(spec, items)

    def ids(self, spec) -> list[str]:
        return [p.msg_id for p in self.published if p.spec is spec]


def matcher(cap: int = 5) -> tuple[MatcherState, Outbound, Broker]:
    index, partition = ProfileIndex(), Partition()
    queue = SuggestionQueue(Schedule(daily_cap=cap, quiet_start=21, quiet_end=8))
    state = MatcherState(partition, index, queue, Planner(index, queue))
    for vol, interest in (("alice", "education"), ("bob", "education"), ("carol", "transport")):
        index_profile(state, InterestProfile(volunteer_id=vol, occurred_at=at(1, 0),
                                             audience={interest: {"email": 2}}))
    bus = Broker()
    return state, Outbound(bus), bus


def message(mid: str, *interests: str) -> MessagePublished:
    return MessagePublished(message_id=mid, title="t", body="b", interests=interests, variants=VARIANTS)


def test_a_matched_message_goes_out_under_its_suggestion_ids_and_again_on_redelivery_only():
    state, outbound, bus = matcher()
    m1 = message("m1", "education")
    asyncio.run(match_message(state, outbound, m1, seq=1, stored_at=at(3, 10), now=at(3, 10)))
    expected = sorted(suggestion_id("m1", v) for v in ("alice", "bob"))
    assert sorted(bus.ids(SUGGESTION_MADE)) == expected
    asyncio.run(match_message(state, outbound, m1, seq=1, stored_at=at(3, 10), now=at(3, 10, 1)))  # redelivered
    asyncio.run(match_message(state, outbound, m1, seq=2, stored_at=at(3, 11), now=at(3, 11)))  # published twice
    assert sorted(bus.attempts) == sorted(expected * 2)  # the redelivery went out again, the duplicate not
    assert sorted(bus.ids(SUGGESTION_MADE)) == expected  # and JetStream kept one of each


def test_what_waits_through_quiet_hours_goes_out_at_the_opening_then_the_watermark_moves_once():
    state, outbound, bus = matcher()
    asyncio.run(rebuild(state, outbound, [], at(3, 22)))
    assert state.rebuilt.is_set() and len(bus.ids(RELEASE_WATERMARK)) == 1  # the first pass marks where it starts
    asyncio.run(match_message(state, outbound, message("m1", "transport"), seq=1, stored_at=at(3, 22),
                              now=at(3, 22)))
    withdraw_message(state, MessageWithdrawn(message_id="elsewhere"), at(3, 23))
    assert bus.ids(SUGGESTION_MADE) == [] and len(state.queue) == 1
    asyncio.run(release_pass(state, outbound, at(4, 7)))  # still quiet
    assert bus.ids(SUGGESTION_MADE) == []
    for minute in (0, 1):
        asyncio.run(release_pass(state, outbound, at(4, 8, minute)))
    assert bus.ids(SUGGESTION_MADE) == [suggestion_id("m1", "carol")]
    assert len(bus.ids(RELEASE_WATERMARK)) == 2 and state.released_until == at(4, 8)


def test_a_release_the_broker_refused_is_published_at_the_next_pass_before_the_watermark_moves():
    state, outbound, bus = matcher()
    asyncio.run(rebuild(state, outbound, [], at(3, 22)))
    asyncio.run(match_message(state, outbound, message("m1", "education"), seq=1, stored_at=at(3, 22),
                              now=at(3, 22)))
    bus.fail = True
    asyncio.run(release_pass(state, outbound, at(4, 8)))
    assert bus.ids(SUGGESTION_MADE) == [] and len(outbound.unsent) == 2
    assert state.released_until == at(3, 22)
    asyncio.run(release_pass(state, outbound, at(4, 8, 1)))
    assert sorted(bus.ids(SUGGESTION_MADE)) == sorted(suggestion_id("m1", v) for v in ("alice", "bob"))
    assert outbound.unsent == [] and state.released_until == at(4, 8, 1)
