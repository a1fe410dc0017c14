from __future__ import annotations

from datetime import datetime

import structlog

from services.matcher import metrics
from services.matcher.outbound import Outbound
from services.matcher.store import MatcherState
from services.matcher.usecases._watermark import note_released

log = structlog.get_logger(__name__)


async def release_pass(state: MatcherState, outbound: Outbound, now: datetime) -> None:
    """Releases at an opening, drops what expired or went stale, and
    publishes again what the last pass could not."""
    decision = state.planner.tick(now)
    metrics.count(decision, len(state.queue))
    if decision.publish or decision.dropped:
        log.info("queue.released", released=decision.released, dropped=dict(decision.dropped),
                 waiting=len(state.queue))
    await outbound.suggestions(decision.suggestions(), retry=True)
    await note_released(state, outbound, now)
