"""Contacts' NATS handlers: keep the campaign's messages, fill inboxes
(and auto-relay what the volunteer chose), record what became of each job."""

from __future__ import annotations

import structlog
from prometheus_client import Counter
from sqlalchemy.engine import Engine
from sqlalchemy import delete
from sqlmodel import Session

from services.contacts import auto_relay, networks
from services.contacts import book as book_ops
from services.contacts.relay_click import Relayer
from services.contacts.store import CampaignMessage, InboxItem, Relay, SentItem, TaxonomyTerm, Volunteer
from shared.messaging import Bus
from shared.catalogue import (
    DISPATCH_RESULT_SUBJECTS,
    EMAIL_BOUNCE,
    EMAIL_DEAD,
    MESSAGE_PUBLISHED,
    MESSAGE_WITHDRAWN,
    OUTCOME_REVISED,
    SUGGESTION_MADE,
    SUPPRESSION_ADDED,
    TAXONOMY_PUBLISHED,
)
from shared.db import in_session
from shared.events import (
    BounceReported,
    Channel,
    DeadLetter,
    DeliveryStatus,
    DispatchResult,
    MessagePublished,
    MessageWithdrawn,
    Suggestion,
    Suppressed,
    Taxonomy,
)
from shared.outcomes import OutcomeKind

log = structlog.get_logger(__name__)

SUGGESTIONS_RECEIVED = Counter(
    "maillage_contacts_suggestions_received_total",
    "Suggestions placed in an inbox, or dropped (unknown volunteer).",
    ["outcome"],
)


def register(bus: Bus, engine: Engine, relayer: Relayer) -> None:
    @bus.subscriber(MESSAGE_PUBLISHED, durable="contacts-messages")
    async def keep_message(event: MessagePublished, _msg) -> None:
        def save(session: Session) -> None:
            session.merge(
                CampaignMessage(
                    message_id=event.message_id,
                    title=event.title,
                    body=event.body,
                    interests=list(event.interests),
                    email_subject=event.variants.email.subject,
                    email_body=event.variants.email.body,
                    short_text=event.variants.short.text if event.variants.short else None,
                    link=event.link,
                    priority=event.priority,
                    expires_at=event.expires_at,
                )
            )
            session.commit()

        await in_session(engine, save)

    @bus.subscriber(MESSAGE_WITHDRAWN, durable="contacts-withdrawals")
    async def withdraw_message(event: MessageWithdrawn, _msg) -> None:
        """The message leaves every inbox and can no longer be relayed."""

        def save(session: Session) -> None:
            message = session.get(CampaignMessage, event.message_id)
            if message is not None and message.withdrawn_at is None:
                message.withdrawn_at = event.occurred_at
                session.add(message)
                session.commit()

        await in_session(engine, save)

    @bus.subscriber(TAXONOMY_PUBLISHED, durable="contacts-taxonomy")
    async def keep_taxonomy(event: Taxonomy, _msg) -> None:
        def save(session: Session) -> None:
            session.exec(delete(TaxonomyTerm))
            session.add_all(TaxonomyTerm(name=t.name, label_fr=t.label_fr, label_en=t.label_en)
                            for t in event.terms)
            session.commit()

        await in_session(engine, save)

    @bus.subscriber(SUGGESTION_MADE, durable="contacts-suggestions", batch_size=64)
    async def fill_inbox(event: Suggestion, _msg) -> None:
        def save(session: Session) -> str:
            if session.get(Volunteer, event.volunteer_id) is None:
                return "unknown_volunteer"
            session.merge(
                InboxItem(
                    suggestion_id=event.suggestion_id,
                    volunteer_id=event.volunteer_id,
                    message_id=event.message_id,
                    matched_interests=list(event.matched_interests),
                    audience_size=event.audience_size,
                    score=event.score,
                )
            )
            session.commit()
            return "stored"

        outcome = await in_session(engine, save)
        if outcome == "stored":
            # before counting: a retried auto-relay redelivers the suggestion,
            # which is then counted once
            await auto_relay.on_suggestion(relayer, event)
        SUGGESTIONS_RECEIVED.labels(outcome).inc()
        if outcome != "stored":
            log.warning("suggestion.dropped", reason=outcome, volunteer_id=event.volunteer_id)

    async def record_outcome(event: DispatchResult, _msg) -> None:
        """The volunteer's history learns what became of each job; a social
        network that refused the credentials marks the account to reconnect."""

        def save(session: Session) -> None:
            if event.outcome is OutcomeKind.token_revoked and event.channel is not Channel.email:
                networks.mark_revoked(session, event.volunteer_id, event.channel, event.occurred_at)
            item = session.get(SentItem, event.job_id)
            if item is None:  # an invitation, or a relay erased since
                return
            if item.outcome == OutcomeKind.bounced:  # the bounce came first: it is final
                return
            item.status, item.reason, item.updated_at = event.status.value, event.reason, event.occurred_at
            item.outcome = event.outcome.value
            session.add(item)
            session.commit()

        await in_session(engine, save)

    for spec in DISPATCH_RESULT_SUBJECTS:  # each channel on its own durable consumer
        channel = spec.pattern.split(".")[1]
        bus.subscriber(spec, durable=f"contacts-{channel}-results", batch_size=64)(record_outcome)

    @bus.subscriber(EMAIL_BOUNCE, durable="contacts-bounces")
    async def suppress_bounced(event: BounceReported, _msg) -> None:
        """A hard bounce: the address is suppressed campaign-wide, as an
        unsubscribe is, and the job's history row says why it failed; feed
        learns the job bounced (its ids only), so staff count it as the
        volunteer's history does."""

        def save(session: Session) -> DispatchResult | None:
            book_ops.suppress_address(session, event.address_hash, "bounce")
            item = session.get(SentItem, event.job_id)
            relay = session.get(Relay, item.relay_id) if item is not None else None
            if item is not None:
                item.status, item.reason = DeliveryStatus.failed.value, f"bounce {event.status}"
                item.outcome, item.updated_at = OutcomeKind.bounced.value, event.occurred_at
                session.add(item)
                session.commit()
            if item is None or relay is None:  # an invitation, or a relay erased since: nothing staff count
                return None
            return DispatchResult(job_id=item.job_id, relay_id=item.relay_id, message_id=item.message_id,
                                  volunteer_id=relay.volunteer_id, channel=Channel.email,
                                  status=DeliveryStatus.failed, reason=item.reason, outcome=OutcomeKind.bounced,
                                  occurred_at=event.occurred_at)

        bounced = await in_session(engine, save)
        await bus.publish(SUPPRESSION_ADDED, Suppressed(address_hash=event.address_hash, reason="bounce"),
                          msg_id=f"suppressed:{event.address_hash}")
        if bounced is not None:
            await bus.publish(OUTCOME_REVISED, bounced, msg_id=f"{event.job_id}:bounced")

    @bus.subscriber(EMAIL_DEAD, durable="contacts-email-dead")
    async def record_dead_letter(event: DeadLetter, _msg) -> None:
        """Every attempt failed (its failed result says so too): the history
        names it a dead letter, which operations may replay by job id."""

        def save(session: Session) -> None:
            item = session.get(SentItem, event.job_id)
            if item is not None:
                item.reason = f"dead letter after {event.attempts} attempts: {event.reason}"[:200]
                session.add(item)
                session.commit()

        await in_session(engine, save)
