"""A suggestion from the matcher fills the volunteer's inbox, and is
relayed at once when it fits an interest they chose to auto-relay: the
click itself (usecases/relay.py), the same rules, the same relay id per
suggestion, so a redelivered suggestion relays nothing twice."""

from __future__ import annotations

import structlog
from prometheus_client import Counter
from sqlmodel import Session

from services.contacts.relay import auto as auto_relay
from services.contacts.relay.auto import AUTO_RELAYS
from services.contacts.store import InboxItem, Volunteer
from services.contacts.usecases._unit import Contacts, unit
from services.contacts.usecases.relay import Refusal, RelayRefused, relay_suggestion
from shared.db import in_session
from shared.events import Suggestion

log = structlog.get_logger(__name__)

SUGGESTIONS_RECEIVED = Counter(
    "maillage_contacts_suggestions_received_total",
    "Suggestions placed in an inbox, or dropped (unknown volunteer).",
    ["outcome"],
)

# Worth another try: the message is on its way, or NATS was briefly away.
# Raising lets the bus redeliver the suggestion with backoff.
RETRY = {Refusal.not_arrived, Refusal.not_queued}


async def receive_suggestion(ctx: Contacts, event: Suggestion) -> None:
    def save(session: Session) -> str:
        if session.get(Volunteer, event.volunteer_id) is None:
            return "unknown_volunteer"
        session.merge(InboxItem(
            suggestion_id=event.suggestion_id,
            volunteer_id=event.volunteer_id,
            message_id=event.message_id,
            matched_interests=list(event.matched_interests),
            audience_size=event.audience_size,
            score=event.score,
        ))
        return "stored"

    outcome = await unit(ctx.engine, save)
    if outcome == "stored":
        # before counting: a retried auto-relay redelivers the suggestion,
        # which is then counted once
        await auto_relay_if_chosen(ctx, event)
    SUGGESTIONS_RECEIVED.labels(outcome).inc()
    if outcome != "stored":
        log.warning("suggestion.dropped", reason=outcome, volunteer_id=event.volunteer_id)


async def auto_relay_if_chosen(ctx: Contacts, event: Suggestion) -> str | None:
    """Relay the suggestion if the volunteer asked for it; the outcome
    (counted), or None when auto-relay does not apply."""
    vol = await in_session(ctx.engine, lambda s: s.get(Volunteer, event.volunteer_id))
    if vol is None or not auto_relay.wanted(vol, event.matched_interests):
        return None
    try:
        _, done = await relay_suggestion(ctx, vol, event.suggestion_id, automatic=True)
        outcome = "relayed" if done else "already"
    except RelayRefused as refused:
        if refused.reason in RETRY:
            raise
        outcome = refused.reason.value
    AUTO_RELAYS.labels(outcome).inc()
    log.info("suggestion.auto_relay", outcome=outcome, volunteer_id=vol.id, suggestion_id=event.suggestion_id)
    return outcome
