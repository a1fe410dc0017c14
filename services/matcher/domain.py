"""The matcher's index: pure data structures, no I/O.

Profiles hold counts per interest and channel. The audience of a message for
a volunteer is estimated as the largest count among the matched interests
(a lower bound that never double-counts a contact who has several of them);
contacts computes the exact figure when the suggestion reaches the inbox.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from shared.events import InterestProfile, MessagePublished


@dataclass(frozen=True)
class Match:
    volunteer_id: str
    matched_interests: tuple[str, ...]
    audience_size: int


def suggestion_id(message_id: str, volunteer_id: str) -> str:
    """Stable per (message, volunteer): a redelivered message yields the same
    suggestion, which JetStream then dedupes."""
    return hashlib.sha256(f"{message_id}:{volunteer_id}".encode()).hexdigest()[:32]


class ProfileIndex:
    def __init__(self) -> None:
        self._audience: dict[str, dict[str, int]] = {}  # volunteer -> interest -> contacts
        self._updated: dict[str, datetime] = {}
        self._by_interest: dict[str, set[str]] = defaultdict(set)

    def __len__(self) -> int:
        return len(self._audience)

    def upsert(self, profile: InterestProfile) -> bool:
        """Index a profile; an older one than what we hold is ignored
        (out-of-order delivery). Returns whether the index changed."""
        vol = profile.volunteer_id
        seen = self._updated.get(vol)
        if seen is not None and profile.occurred_at < seen:
            return False
        for interest in self._audience.get(vol, {}):
            self._by_interest[interest].discard(vol)
        audience = {
            interest: sum(per_channel.values())
            for interest, per_channel in profile.audience.items()
            if sum(per_channel.values()) > 0
        }
        self._audience[vol] = audience
        self._updated[vol] = profile.occurred_at
        for interest in audience:
            self._by_interest[interest].add(vol)
        return True

    def match(self, message: MessagePublished) -> list[Match]:
        """One match per volunteer whose profile shares an interest with the
        message; a message without interests fits every volunteer with an
        audience."""
        if message.interests:
            candidates: set[str] = set()
            for interest in message.interests:
                candidates |= self._by_interest.get(interest, set())
            wanted = set(message.interests)
        else:
            candidates = {v for v, a in self._audience.items() if a}
            wanted = None
        matches = []
        for vol in sorted(candidates):
            audience = self._audience[vol]
            matched = tuple(sorted(i for i in audience if wanted is None or i in wanted))
            matches.append(Match(vol, matched, max(audience[i] for i in matched)))
        return matches
