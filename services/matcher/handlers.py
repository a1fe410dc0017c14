"""The matcher's NATS handlers: rebuild the index, match, suggest."""

from __future__ import annotations

import structlog
from faststream.nats import DeliverPolicy
from prometheus_client import Counter, Gauge

from services.matcher.domain import ProfileIndex, suggestion_id
from shared.bus import Bus, Replay
from shared.catalogue import MESSAGE_PUBLISHED, PROFILE_UPDATED, SUGGESTION_MADE
from shared.events import InterestProfile, MessagePublished, Suggestion

log = structlog.get_logger(__name__)

PROFILES_INDEXED = Gauge("maillage_matcher_profiles", "Volunteer profiles in the index.")
SUGGESTIONS = Counter("maillage_matcher_suggestions_total", "Suggestions published.")
MESSAGES_MATCHED = Counter("maillage_matcher_messages_matched_total", "Messages matched.")


class Matcher:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.index = ProfileIndex()
        # Messages wait until the profiles stream is replayed, so no volunteer
        # is missed because the matcher just started.
        self.profiles = Replay(bus, PROFILE_UPDATED, self.index_profile,
                               policy=DeliverPolicy.LAST_PER_SUBJECT,
                               describe=lambda: f"{len(self.index)} profiles")

    def index_profile(self, profile: InterestProfile) -> None:
        self.index.upsert(profile)
        PROFILES_INDEXED.set(len(self.index))

    def register(self) -> None:
        @self.bus.subscriber(MESSAGE_PUBLISHED, durable="matcher-messages", batch_size=1)
        async def match_message(message: MessagePublished, _msg) -> None:
            await self.profiles.caught_up.wait()
            matches = self.index.match(message)
            items = [
                (
                    Suggestion(
                        suggestion_id=(sid := suggestion_id(message.message_id, m.volunteer_id)),
                        volunteer_id=m.volunteer_id,
                        message_id=message.message_id,
                        matched_interests=m.matched_interests,
                        audience_size=m.audience_size,
                    ),
                    (m.volunteer_id,),
                    sid,
                )
                for m in matches
            ]
            await self.bus.publish_many(SUGGESTION_MADE, items)
            SUGGESTIONS.inc(len(items))
            MESSAGES_MATCHED.inc()
            log.info("message.matched", message_id=message.message_id, suggestions=len(items))
