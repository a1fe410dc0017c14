from __future__ import annotations

from datetime import datetime

from services.matcher.outbound import Outbound
from services.matcher.store import MatcherState
from shared.events import ReleaseWatermark


async def note_released(state: MatcherState, outbound: Outbound, now: datetime) -> None:
    """Move the watermark once an opening has passed and everything
    released is out (nothing left unsent): one small message per opening,
    not per pass."""
    if outbound.unsent or not state.queue.schedule.opened_since(state.released_until, now):
        return
    await outbound.watermark(ReleaseWatermark(partition=state.partition.key, released_until=now))
    state.released_until = now
