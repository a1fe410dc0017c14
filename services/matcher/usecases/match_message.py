from __future__ import annotations

import time
from datetime import datetime

import structlog

from services.matcher import metrics
from services.matcher.outbound import Outbound
from services.matcher.store import MatcherState
from shared.events import MessagePublished

log = structlog.get_logger(__name__)


async def match_message(state: MatcherState, outbound: Outbound, message: MessagePublished, *,
                        seq: int, stored_at: datetime, now: datetime) -> None:
    """``seq`` and ``stored_at`` are the stream's: a redelivery (same
    sequence) publishes the same suggestions again, a second publication by
    feed (another sequence) is refused."""
    started = time.perf_counter()
    decision = state.planner.handle(message, seq=seq, stored_at=stored_at, now=now)
    matched_in = time.perf_counter() - started
    metrics.count(decision, len(state.queue))
    if decision.rejected:
        log.warning("message.rejected", message_id=message.message_id, reason=decision.rejected)
        return
    await outbound.suggestions(decision.suggestions())  # an error: nacked, redelivered, published again
    if not decision.republished:
        metrics.MESSAGES_MATCHED.inc()
    log.info("message.matched", message_id=message.message_id, partition=str(state.partition),
             published=decision.new, queued=decision.queued, republished=decision.republished,
             match_seconds=round(matched_in, 3), seconds=round(time.perf_counter() - started, 3))
