"""The addresses never to write to, as the dispatcher holds them."""

from __future__ import annotations

from shared.catalogue import SUPPRESSION_ADDED
from shared.events import Suppressed
from shared.messaging import Bus, Replay


class SuppressionList:
    """Keyed hashes of addresses never to write to, replayed from JetStream
    on start and kept current: checked for every job, at send time."""

    def __init__(self, bus: Bus) -> None:
        self.hashes: set[str] = set()
        self.replay = Replay(bus, SUPPRESSION_ADDED, self.add,
                             describe=lambda: f"{len(self.hashes)} suppressed addresses")

    def add(self, event: Suppressed) -> None:
        self.hashes.add(event.address_hash)

    def __contains__(self, address_hash: str) -> bool:
        return address_hash in self.hashes
