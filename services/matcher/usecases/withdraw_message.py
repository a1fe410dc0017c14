from __future__ import annotations

from datetime import datetime

import structlog

from services.matcher import metrics
from services.matcher.store import MatcherState
from shared.events import MessageWithdrawn

log = structlog.get_logger(__name__)


def withdraw_message(state: MatcherState, event: MessageWithdrawn, now: datetime) -> None:
    """Its waiting suggestions are dropped (those already out still count
    for the day), and it is never matched after, even if delivered late."""
    decision = state.planner.withdraw(event, now)
    metrics.count(decision, len(state.queue))
    log.info("message.withdrawn", message_id=event.message_id, reason=event.reason,
             dropped=sum(decision.dropped.values()))
