"""Auto-relay: a volunteer may let contacts relay, without their click,
the suggestions that fit interests they chose. It is the click itself
(``relay_click``), made by the suggestion handler: the same rules, the same
relay id per suggestion, so a redelivered suggestion relays nothing twice."""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from prometheus_client import Counter

from services.contacts.relay_click import Refusal, Relayer, RelayRefused, relay_suggestion
from services.contacts.store import Volunteer
from shared.db import in_session
from shared.events import Suggestion

log = structlog.get_logger(__name__)

AUTO_RELAYS = Counter(
    "maillage_contacts_auto_relays_total",
    "Suggestions relayed by a volunteer's auto-relay choice, or why not.",
    ["outcome"],  # relayed, already, not_live, no_suggestion, erased
)

# Worth another try: the message is on its way, or NATS was briefly away.
# Raising lets the bus redeliver the suggestion with backoff.
RETRY = {Refusal.not_arrived, Refusal.not_queued}


def effective(vol: Volunteer) -> set[str]:
    """The auto-relay interests that are still shared: sharing an interest
    no more stops its auto-relay too, whatever was stored."""
    chosen = set(vol.auto_relay_interests or ())
    return chosen if vol.shared_interests is None else chosen & set(vol.shared_interests)


def wanted(vol: Volunteer, matched_interests: Iterable[str]) -> bool:
    return bool(effective(vol) & set(matched_interests))


async def on_suggestion(relayer: Relayer, event: Suggestion) -> str | None:
    """Relay the suggestion if the volunteer asked for it; the outcome
    (counted), or None when auto-relay does not apply."""
    vol = await in_session(relayer.engine, lambda s: s.get(Volunteer, event.volunteer_id))
    if vol is None or not wanted(vol, event.matched_interests):
        return None
    try:
        _, done = await relay_suggestion(relayer, vol, event.suggestion_id, automatic=True)
        outcome = "relayed" if done else "already"
    except RelayRefused as refused:
        if refused.reason in RETRY:
            raise
        outcome = refused.reason.value
    AUTO_RELAYS.labels(outcome).inc()
    log.info("suggestion.auto_relay", outcome=outcome, volunteer_id=vol.id, suggestion_id=event.suggestion_id)
    return outcome


def choice_problem(chosen: set[str], shared: set[str] | None, taxonomy: set[str]) -> str | None:
    """Why a volunteer's auto-relay choice is refused, if it is: only the
    campaign's interests (suggestions carry no other; before the campaign
    sets a taxonomy, any interest goes, as for its messages), and only
    shared ones (an unshared interest brings no suggestion to relay)."""
    unknown = sorted(chosen - taxonomy) if taxonomy else []
    if unknown:
        return f"not in the campaign's interests: {', '.join(unknown)}"
    unshared = sorted(chosen - shared) if shared is not None else []
    if unshared:
        return f"not among the interests you share: {', '.join(unshared)}"
    return None
