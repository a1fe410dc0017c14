"""Everything the matcher publishes leaves through here: suggestions
(``matcher.suggestions.<volunteer>``) and the partition's release watermark
(``matcher.state.<i>-of-<n>``)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import structlog

from shared.messaging import Bus
from shared.catalogue import RELEASE_WATERMARK, SUGGESTION_MADE
from shared.events import ReleaseWatermark, Suggestion

log = structlog.get_logger(__name__)


class Outbound:
    CHUNK = 2000  # suggestions per publish_many call

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.unsent: list[Suggestion] = []  # failed in a pass without a message to nack: tried again next pass

    async def suggestions(self, suggestions: Iterable[Suggestion], *, retry: bool = False) -> None:
        """Publish with Nats-Msg-Id = suggestion id, in chunks: each chunk's
        events are built while the previous one is acked, and the event loop
        never holds a hundred thousand tasks at once. With ``retry`` (there
        is no message to nack), what fails is kept and tried at the next pass."""
        if retry:
            suggestions, self.unsent = itertools.chain(self.unsent, suggestions), []
        pending = iter(suggestions)
        while chunk := list(itertools.islice(pending, self.CHUNK)):
            try:
                await self.bus.publish_many(SUGGESTION_MADE, [(s, (s.volunteer_id,), s.suggestion_id) for s in chunk])
            except Exception as exc:
                if not retry:
                    raise
                self.unsent = chunk + list(pending)
                log.error("suggestions.publish_failed", count=len(self.unsent), error=type(exc).__name__)
                return

    async def watermark(self, mark: ReleaseWatermark) -> None:
        await self.bus.publish(RELEASE_WATERMARK, mark, mark.partition,
                               msg_id=f"{mark.partition}:{mark.released_until.isoformat()}")
