from __future__ import annotations

from datetime import datetime

import structlog

from services.matcher import metrics
from services.matcher.domain import Stored
from services.matcher.outbound import Outbound
from services.matcher.store import MatcherState
from services.matcher.usecases._watermark import note_released

log = structlog.get_logger(__name__)


async def rebuild(state: MatcherState, outbound: Outbound, records: list[Stored], now: datetime) -> None:
    """Run once the taxonomy, the profiles, FEED and the watermark are
    replayed. Matching starts as soon as the queues are back; what a crash
    left half-published, or no replica was up to release, goes out after."""
    decision = state.planner.rebuild(records, now, state.released_until)
    metrics.WAITING.set(len(state.queue))
    log.info("queue.rebuilt", partition=str(state.partition), events=len(records), waiting=len(state.queue),
             published_again=decision.republished, released_late=decision.released_late,
             assumed_released=decision.assumed_released)
    state.rebuilt.set()
    metrics.REPUBLISHED.inc(decision.republished)
    metrics.RELEASED.inc(decision.released_late)
    await outbound.suggestions(decision.suggestions(), retry=True)
    await note_released(state, outbound, now)
