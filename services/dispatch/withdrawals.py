"""Messages staff withdrew, as every dispatcher needs them: a job of a
withdrawn message is dropped, not sent (reported ``withdrawn``), even if it
was queued before the withdrawal."""

from __future__ import annotations

from shared.messaging import Bus, Replay
from shared.catalogue import MESSAGE_WITHDRAWN


class WithdrawnMessages:
    """Replayed from FEED on start, kept current; readiness waits for it."""

    def __init__(self, bus: Bus) -> None:
        self.ids: set[str] = set()
        self.replay = Replay(bus, MESSAGE_WITHDRAWN, lambda e: self.ids.add(e.message_id),
                             describe=lambda: f"{len(self.ids)} withdrawn messages")

    async def contains(self, message_id: str) -> bool:
        """Whether ``message_id`` was withdrawn, once the replay caught up
        (before that, a job waits rather than risk sending a withdrawn one)."""
        await self.replay.caught_up.wait()
        return message_id in self.ids
