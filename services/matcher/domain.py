"""The matcher's index: pure data structures, no I/O.

Profiles hold counts of confirmed contacts per interest and channel, per
region and per locale. For one message and one volunteer:

- **eligible** when the volunteer has confirmed contacts in one of the
  message's interests (or, for a broad message without interests, any
  confirmed contact at all), and, when the message targets regions, in one
  of those regions (its count > 0), and likewise for locales;
- **audience size** is an estimate from counts alone: the largest count among
  the matched interests (a lower bound of their union that never
  double-counts a contact holding several of them; for a broad message, the
  volunteer's largest known total), capped by the number of contacts in the
  targeted regions and locales. Contacts computes the exact figure when the
  volunteer relays;
- **score** = audience size × 2^(priority − 1): a normal message (priority 1)
  scores its audience, each priority step doubles it, a low one (0) halves
  it. It orders the volunteer's inbox and the waiting queue.

Replicas split the volunteers by a stable hash (``Partition``): each indexes
only the profiles it owns.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterable
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


def score(audience_size: int, priority: int) -> float:
    """Audience weighted by priority: ×0.5, ×1, ×2, ×4 for priorities 0–3."""
    return audience_size * 2.0 ** (priority - 1)


def partition_of(volunteer_id: str, partitions: int) -> int:
    """Which of ``partitions`` replicas owns a volunteer: the first 8 bytes of
    sha256(volunteer id), modulo. Stable across processes and releases
    (unlike ``hash()``), and even for any id shape."""
    return int.from_bytes(hashlib.sha256(volunteer_id.encode()).digest()[:8], "big") % partitions


@dataclass(frozen=True)
class Partition:
    """Replica ``index`` of ``count``: owns the volunteers that hash to it."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"partition {self.index} of {self.count} does not exist")

    def owns(self, volunteer_id: str) -> bool:
        return self.count == 1 or partition_of(volunteer_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def is_known_interest(name: str, taxonomy: frozenset[str]) -> bool:
    """As contacts has it: ``local:<commune>`` words need no taxonomy entry."""
    return name in taxonomy or name.startswith("local:")


@dataclass(frozen=True)
class Indexed:
    """What ``ProfileIndex.upsert`` did: ``changed`` (also the truth value),
    or why not (``reason``), and the interests it left out as unknown."""

    changed: bool
    reason: str | None = None
    unknown: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.changed


class _Entry:
    """One volunteer's profile as the index keeps it: interned names, no
    zero counts, no pydantic object (a hundred thousand of them add up)."""

    __slots__ = ("raw", "audience", "regions", "locales", "updated", "reach")

    def __init__(self, raw: dict[str, int], regions: dict[str, int], locales: dict[str, int],
                 updated: datetime) -> None:
        self.raw = raw  # every interest with contacts, known or not (the taxonomy may grow)
        self.audience: dict[str, int] = raw
        self.regions = regions
        self.locales = locales
        self.updated = updated
        self.reach = 0

    def filter(self, taxonomy: frozenset[str] | None) -> tuple[str, ...]:
        """Keep the known interests; returns the unknown ones."""
        if taxonomy is None:
            self.audience = self.raw
            unknown: tuple[str, ...] = ()
        else:
            self.audience = {i: n for i, n in self.raw.items() if is_known_interest(i, taxonomy)}
            unknown = tuple(sorted(i for i in self.raw if i not in self.audience))
        self.reach = max(max(self.audience.values(), default=0),
                         sum(self.regions.values()), sum(self.locales.values()))
        return unknown


_EMPTY: dict[str, int] = {}


def _counts(counts: dict[str, int]) -> dict[str, int]:
    kept = {sys.intern(k): n for k, n in counts.items() if n > 0}
    return kept or _EMPTY


class ProfileIndex:
    """Every owned volunteer's latest profile, and inverted indexes from
    interest, region and locale to volunteers."""

    def __init__(self, partition: Partition | None = None) -> None:
        self.partition = partition or Partition()
        self.taxonomy: frozenset[str] | None = None
        self._entries: dict[str, _Entry] = {}
        self._by_interest: dict[str, set[str]] = {}
        self._by_region: dict[str, set[str]] = {}
        self._by_locale: dict[str, set[str]] = {}
        self._reachable: set[str] = set()  # volunteers with any confirmed contact

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, volunteer_id: str) -> bool:
        return volunteer_id in self._entries

    def volunteers(self) -> set[str]:
        return set(self._entries)

    # -- writing ---------------------------------------------------------------------

    def upsert(self, profile: InterestProfile) -> Indexed:
        """Index a profile this replica owns. An older one than what we hold
        is ignored (out-of-order delivery); interests outside the taxonomy
        (once there is one) are left out and reported."""
        vol = profile.volunteer_id
        if not self.partition.owns(vol):
            return Indexed(False, "other_partition")
        old = self._entries.get(vol)
        if old is not None and profile.occurred_at < old.updated:
            return Indexed(False, "out_of_order")
        raw = _counts({i: sum(per_channel.values()) for i, per_channel in profile.audience.items()})
        entry = _Entry(raw, _counts(profile.regions), _counts(profile.locales), profile.occurred_at)
        unknown = entry.filter(self.taxonomy)
        vol = sys.intern(vol)
        if old is not None:
            self._unlink(vol, old)
        self._entries[vol] = entry
        self._link(vol, entry)
        return Indexed(True, None, unknown)

    def set_taxonomy(self, names: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """Apply a new taxonomy to every held profile (it changes rarely).
        Returns, per volunteer, the interests now left out."""
        self.taxonomy = frozenset(names)
        left_out = {}
        for vol, entry in self._entries.items():
            self._unlink(vol, entry)
            unknown = entry.filter(self.taxonomy)
            self._link(vol, entry)
            if unknown:
                left_out[vol] = unknown
        return left_out

    def _link(self, vol: str, entry: _Entry) -> None:
        for table, keys in ((self._by_interest, entry.audience), (self._by_region, entry.regions),
                            (self._by_locale, entry.locales)):
            for key in keys:
                table.setdefault(key, set()).add(vol)
        if entry.reach:
            self._reachable.add(vol)

    def _unlink(self, vol: str, entry: _Entry) -> None:
        for table, keys in ((self._by_interest, entry.audience), (self._by_region, entry.regions),
                            (self._by_locale, entry.locales)):
            for key in keys:
                members = table.get(key)
                if members is not None:
                    members.discard(vol)
                    if not members:
                        del table[key]
        self._reachable.discard(vol)

    # -- reading ---------------------------------------------------------------------

    def _union(self, table: dict[str, set[str]], keys: Iterable[str]) -> set[str]:
        found: set[str] = set()
        for key in keys:
            found |= table.get(key, _NOBODY)
        return found

    def candidates(self, message: MessagePublished) -> set[str]:
        """The volunteers a message reaches, before counting."""
        if message.interests:
            found = self._union(self._by_interest, set(message.interests))
        else:
            found = set(self._reachable)
        for table, keys in ((self._by_region, message.regions), (self._by_locale, message.locales)):
            if keys:
                targeted = self._union(table, set(keys))
                found = found & targeted if len(found) <= len(targeted) else targeted & found
        return found

    def match(self, message: MessagePublished) -> list[Match]:
        """One match per eligible volunteer (see the module doc), in
        volunteer order."""
        wanted = set(message.interests)
        regions, locales = set(message.regions), set(message.locales)
        matches = []
        for vol in sorted(self.candidates(message)):
            entry = self._entries[vol]
            if wanted:
                matched = tuple(sorted(i for i in entry.audience if i in wanted))
                size = max(entry.audience[i] for i in matched)
            else:
                matched = tuple(sorted(entry.audience))
                size = entry.reach
            if regions:
                size = min(size, sum(entry.regions.get(r, 0) for r in regions))
            if locales:
                size = min(size, sum(entry.locales.get(loc, 0) for loc in locales))
            matches.append(Match(vol, matched, size))
        return matches


_NOBODY: frozenset[str] = frozenset()
