"""Contacts' NATS handlers: keep the campaign's messages, fill inboxes
(and auto-relay what the volunteer chose), record what became of each job.
Each delivery is one use-case call."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from services.contacts.usecases import receive_campaign, receive_outcome
from services.contacts.usecases._unit import Contacts
from services.contacts.usecases.receive_suggestion import receive_suggestion
from shared.catalogue import (
    DISPATCH_RESULT_SUBJECTS,
    EMAIL_BOUNCE,
    EMAIL_DEAD,
    MESSAGE_PUBLISHED,
    MESSAGE_WITHDRAWN,
    SUGGESTION_MADE,
    TAXONOMY_PUBLISHED,
)
from shared.events import (
    BounceReported,
    DeadLetter,
    DispatchResult,
    MessagePublished,
    MessageWithdrawn,
    Suggestion,
    Taxonomy,
)
from shared.messaging import Bus


def register(bus: Bus, engine: Engine, ctx: Contacts) -> None:
    @bus.subscriber(MESSAGE_PUBLISHED, durable="contacts-messages")
    async def keep_message(event: MessagePublished, _msg) -> None:
        await receive_campaign.keep_message(engine, event)

    @bus.subscriber(MESSAGE_WITHDRAWN, durable="contacts-withdrawals")
    async def withdraw_message(event: MessageWithdrawn, _msg) -> None:
        await receive_campaign.withdraw_message(engine, event)

    @bus.subscriber(TAXONOMY_PUBLISHED, durable="contacts-taxonomy")
    async def keep_taxonomy(event: Taxonomy, _msg) -> None:
        await receive_campaign.keep_taxonomy(engine, event)

    @bus.subscriber(SUGGESTION_MADE, durable="contacts-suggestions", batch_size=64)
    async def fill_inbox(event: Suggestion, _msg) -> None:
        await receive_suggestion(ctx, event)

    async def record_outcome(event: DispatchResult, _msg) -> None:
        await receive_outcome.record_outcome(engine, event)

    for spec in DISPATCH_RESULT_SUBJECTS:  # each channel on its own durable consumer
        channel = spec.pattern.split(".")[1]
        bus.subscriber(spec, durable=f"contacts-{channel}-results", batch_size=64)(record_outcome)

    @bus.subscriber(EMAIL_BOUNCE, durable="contacts-bounces")
    async def suppress_bounced(event: BounceReported, _msg) -> None:
        await receive_outcome.record_bounce(engine, bus, event)

    @bus.subscriber(EMAIL_DEAD, durable="contacts-email-dead")
    async def record_dead_letter(event: DeadLetter, _msg) -> None:
        await receive_outcome.record_dead_letter(engine, event)
