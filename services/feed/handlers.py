"""Feed's NATS handlers: turn events into countable facts."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from services.feed.store import DeliveryFact, RelayFact, SuggestionFact, add_once
from shared.bus import Bus
from shared.catalogue import EMAIL_RESULT, RELAY_REQUESTED, SUGGESTION_MADE
from shared.db import in_session
from shared.events import DispatchResult, RelayRequested, Suggestion


def register(bus: Bus, engine: Engine) -> None:
    async def record(row) -> None:
        await in_session(engine, lambda s: add_once(s, row))

    @bus.subscriber(SUGGESTION_MADE, durable="feed-suggestions", batch_size=64)
    async def count_suggestion(event: Suggestion, _msg) -> None:
        await record(
            SuggestionFact(
                message_id=event.message_id,
                volunteer_id=event.volunteer_id,
                audience_size=event.audience_size,
            )
        )

    @bus.subscriber(RELAY_REQUESTED, durable="feed-relays")
    async def count_relay(event: RelayRequested, _msg) -> None:
        await record(
            RelayFact(
                relay_id=event.relay_id,
                message_id=event.message_id,
                emails_queued=event.jobs_queued.get("email", 0),
            )
        )

    @bus.subscriber(EMAIL_RESULT, durable="feed-email-results", batch_size=64)
    async def count_delivery(event: DispatchResult, _msg) -> None:
        await record(
            DeliveryFact(
                job_id=event.job_id,
                message_id=event.message_id,
                channel=event.channel.value,
                status=event.status.value,
            )
        )
