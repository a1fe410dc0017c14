"""The matcher's store: memory only. Nothing is written to a database; the
index, the queues and the watermark are rebuilt from JetStream at every start
(``domain.planner``'s module doc says how), so this is the state the use cases
read and change, one event at a time on one event loop."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime

from services.matcher.domain import Partition, Planner, ProfileIndex, SuggestionQueue
from services.matcher.settings import MatcherSettings


@dataclass
class MatcherState:
    partition: Partition
    index: ProfileIndex
    queue: SuggestionQueue
    planner: Planner
    released_until: datetime | None = None  # the partition's watermark, as last read or written
    # Opens once the queues are rebuilt from FEED: no message is matched, and
    # no queue released, against half a state.
    rebuilt: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def for_settings(cls, settings: MatcherSettings) -> MatcherState:
        index = ProfileIndex(settings.owned)
        queue = SuggestionQueue(settings.schedule)
        return cls(settings.owned, index, queue, Planner(index, queue))

    async def ready(self) -> tuple[bool, str]:
        if not self.rebuilt.is_set():
            return False, "rebuilding queues from FEED"
        return True, f"{len(self.queue)} waiting"
