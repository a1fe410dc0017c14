"""What became of a job reaches the volunteer's history: a dispatcher's
result, a hard bounce (the address closes campaign-wide, and feed learns
the job bounced), a dead letter."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session

from services.contacts import book as book_ops
from services.contacts import networks, outbound
from services.contacts.store import Relay, SentItem
from services.contacts.usecases._unit import unit
from shared.events import BounceReported, Channel, DeadLetter, DeliveryStatus, DispatchResult
from shared.messaging import Bus
from shared.outcomes import OutcomeKind


async def record_outcome(engine: Engine, event: DispatchResult) -> None:
    """The job's history row learns its outcome; a social network that
    refused the credentials marks the account to reconnect."""

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

    await unit(engine, save)


async def record_bounce(engine: Engine, bus: Bus, event: BounceReported) -> None:
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
        if item is None or relay is None:  # an invitation, or a relay erased since: nothing staff count
            return None
        return DispatchResult(job_id=item.job_id, relay_id=item.relay_id, message_id=item.message_id,
                              volunteer_id=relay.volunteer_id, channel=Channel.email,
                              status=DeliveryStatus.failed, reason=item.reason, outcome=OutcomeKind.bounced,
                              occurred_at=event.occurred_at)

    bounced = await unit(engine, save)
    await outbound.suppressed(bus, event.address_hash, "bounce")
    if bounced is not None:
        await outbound.outcome_revised(bus, bounced)


async def record_dead_letter(engine: Engine, event: DeadLetter) -> None:
    """Every attempt failed (its failed result says so too): the history
    names it a dead letter, which operations may replay by job id."""

    def save(session: Session) -> None:
        item = session.get(SentItem, event.job_id)
        if item is not None:
            item.reason = f"dead letter after {event.attempts} attempts: {event.reason}"[:200]
            session.add(item)

    await unit(engine, save)
