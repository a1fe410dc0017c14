"""The matcher's NATS handlers on the FakeBus: what each subscription does
with a delivery, and how it is settled. Redelivery timing, the durable
consumers and dedupe across restarts stay with test_matcher_service.py and
test_matcher_partitions.py, on a real nats-server."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from services.matcher.domain import Partition, Planner, ProfileIndex, Schedule, SuggestionQueue, suggestion_id
from services.matcher.handlers import Handlers
from services.matcher.outbound import Outbound
from services.matcher.store import MatcherState
from shared.catalogue import (
    MATCHER,
    MESSAGE_PUBLISHED,
    MESSAGE_WITHDRAWN,
    PROFILE_UPDATED,
    RELEASE_WATERMARK,
    SUGGESTION_MADE,
    TAXONOMY_PUBLISHED,
)
from shared.events import InterestProfile, MessagePublished, MessageWithdrawn, Taxonomy, TaxonomyTerm, Variants
from shared.messaging import FakeBus

NOON = datetime(2026, 11, 3, 11, tzinfo=timezone.utc)  # noon in Paris: no quiet hours
VARIANTS = Variants.model_validate({"email": {"subject": "s", "body": "b"}})


def profile(volunteer_id: str, interest: str) -> InterestProfile:
    return InterestProfile(volunteer_id=volunteer_id, occurred_at=NOON, audience={interest: {"email": 2}})


def test_a_replica_on_the_fake_bus_indexes_profiles_matches_messages_and_drops_withdrawn_ones():
    async def scenario() -> None:
        bus = FakeBus(MATCHER)
        index = ProfileIndex(Partition())
        queue = SuggestionQueue(Schedule(daily_cap=1, quiet_start=21, quiet_end=8))
        state = MatcherState(Partition(), index, queue, Planner(index, queue))
        handlers = Handlers(bus, state, Outbound(bus), release_seconds=3600, clock=lambda: NOON)
        await handlers.prepare()  # nothing stored anywhere: every replay is caught up at once
        await asyncio.wait_for(state.rebuilt.wait(), 5)
        assert (await state.ready())[0] and bus.events(RELEASE_WATERMARK)[0].partition == "0-of-1"

        await bus.deliver(TAXONOMY_PUBLISHED, Taxonomy(terms=(
            TaxonomyTerm(name="education", label_fr="Éducation", label_en="Education"),)))
        for vol, interest in (("alice", "education"), ("bob", "education"), ("carol", "transport")):
            await bus.deliver(PROFILE_UPDATED, profile(vol, interest), vol)
        assert index.volunteers() == {"alice", "bob", "carol"}  # carol's transport, not a campaign term, trimmed

        for mid in ("m1", "m2"):
            message = MessagePublished(message_id=mid, title="t", body="b", interests=("education",),
                                       variants=VARIANTS)
            settled = {raw.settled for raw in await bus.deliver(MESSAGE_PUBLISHED, message)}
            assert settled == {None, "ack"}  # the FEED replay (live: publications pass) and the durable consumer
        assert sorted(s.suggestion_id for s in bus.events(SUGGESTION_MADE)) == sorted(
            suggestion_id("m1", v) for v in ("alice", "bob"))
        assert len(queue) == 2  # m2 waits: the day's cap is one

        await bus.deliver(MESSAGE_WITHDRAWN, MessageWithdrawn(message_id="m2"))
        assert len(queue) == 0
        await handlers.stop()

    asyncio.run(scenario())
