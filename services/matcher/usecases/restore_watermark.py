from __future__ import annotations

from services.matcher.store import MatcherState
from shared.events import ReleaseWatermark


def restore_watermark(state: MatcherState, event: ReleaseWatermark) -> None:
    """The partition's note of up to when it released (other partitions'
    notes share the stream: ignored)."""
    if event.partition == state.partition.key:
        state.released_until = max(state.released_until or event.released_until, event.released_until)
