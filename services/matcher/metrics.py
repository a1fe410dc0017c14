"""The matcher's figures (Prometheus), counted by the use cases."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

from services.matcher.domain import Decision

PROFILES_INDEXED = Gauge("maillage_matcher_profiles", "Volunteer profiles in the index (this partition).")
SUGGESTIONS = Counter("maillage_matcher_suggestions_total", "Suggestions published (new or released).")
QUEUED = Counter("maillage_matcher_suggestions_queued_total",
                 "Suggestions put in a volunteer's queue (quiet hours or daily cap).")
RELEASED = Counter("maillage_matcher_suggestions_released_total", "Waiting suggestions published.")
DROPPED = Counter("maillage_matcher_suggestions_dropped_total",
                  "Waiting suggestions dropped: withdrawn, expired or stale.", ["reason"])
REPUBLISHED = Counter("maillage_matcher_suggestions_republished_total",
                      "Suggestions published again after a redelivery or a restart (deduped by JetStream).")
REJECTED = Counter("maillage_matcher_rejected_total",
                   "Events refused or trimmed: unknown_interest (per interest), out_of_order_profile, "
                   "duplicate_message, stale_message, expired_message, withdrawn_message.", ["reason"])
WAITING = Gauge("maillage_matcher_waiting", "Suggestions waiting in queues (this partition).")
MESSAGES_MATCHED = Counter("maillage_matcher_messages_matched_total", "Messages matched.")


def count(decision: Decision, waiting: int) -> None:
    SUGGESTIONS.inc(decision.new + decision.released)
    QUEUED.inc(decision.queued)
    RELEASED.inc(decision.released)
    REPUBLISHED.inc(decision.republished)
    for reason, n in decision.dropped.items():
        DROPPED.labels(reason).inc(n)
    if decision.rejected:
        REJECTED.labels(decision.rejected).inc()
    WAITING.set(waiting)
