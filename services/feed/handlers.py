"""Feed's NATS handlers: turn events into countable facts.

Each fact is keyed by the event's own id (suggestion: message + volunteer,
relay id, job id) and inserted once, so a redelivered or duplicated event
counts once; facts are joined only when read, so their order of arrival
does not matter."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from services.feed.store import (
    DeliveryFact,
    RelayFact,
    RelayQueued,
    SuggestionFact,
    SuggestionInterest,
    SuggestionRegion,
    add_once,
    revise_delivery,
)
from shared.messaging import Bus
from shared.catalogue import DISPATCH_RESULT_SUBJECTS, OUTCOME_REVISED, RELAY_REQUESTED, SUGGESTION_MADE
from shared.db import in_session
from shared.events import DispatchResult, RelayRequested, Suggestion
from shared.outcomes import OutcomeKind


def register(bus: Bus, engine: Engine) -> None:
    async def record(*rows) -> None:
        await in_session(engine, lambda s: add_once(s, *rows))

    @bus.subscriber(SUGGESTION_MADE, durable="feed-suggestions", batch_size=64)
    async def count_suggestion(event: Suggestion, _msg) -> None:
        await record(
            SuggestionFact(
                message_id=event.message_id,
                volunteer_id=event.volunteer_id,
                audience_size=event.audience_size,
            ),
            *(SuggestionInterest(message_id=event.message_id, volunteer_id=event.volunteer_id, interest=i)
              for i in sorted(set(event.matched_interests))),
            *(SuggestionRegion(message_id=event.message_id, volunteer_id=event.volunteer_id, region=r)
              for r in sorted(set(event.matched_regions))),
        )

    @bus.subscriber(RELAY_REQUESTED, durable="feed-relays")
    async def count_relay(event: RelayRequested, _msg) -> None:
        await record(
            RelayFact(relay_id=event.relay_id, message_id=event.message_id, volunteer_id=event.volunteer_id),
            *(RelayQueued(relay_id=event.relay_id, channel=channel.value, message_id=event.message_id, queued=n)
              for channel, n in sorted(event.jobs_queued.items()) if n > 0),
        )

    async def count_delivery(event: DispatchResult, _msg) -> None:
        fact = DeliveryFact(
            job_id=event.job_id,
            message_id=event.message_id,
            volunteer_id=event.volunteer_id,
            channel=event.channel.value,
            status=event.status.value,
            reason=event.reason,
            outcome=event.outcome.value,
            at=event.occurred_at,
        )
        if event.outcome is OutcomeKind.bounced:  # final, even over the job's "delivered"
            await in_session(engine, lambda s: revise_delivery(s, fact))
        else:
            await record(fact)

    # every channel's results count alike (the fact says its channel), each on its own durable
    for spec in DISPATCH_RESULT_SUBJECTS:
        channel = spec.pattern.split(".")[1]
        bus.subscriber(spec, durable=f"feed-{channel}-results", batch_size=64)(count_delivery)
    # an outcome learnt later (a bounce, through contacts, which holds the job's ids)
    bus.subscriber(OUTCOME_REVISED, durable="feed-outcomes", batch_size=64)(count_delivery)
