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
- **matched regions** are the targeted regions where the volunteer has
  confirmed contacts (every region they have, for an untargeted message):
  staff see them as k-anonymous counts per region;
- **score** = audience size × 2^(priority − 1): a normal message (priority 1)
  scores its audience, each priority step doubles it, a low one (0) halves
  it. It orders the volunteer's inbox and the waiting queue.

Replicas split the volunteers by a stable hash (``Partition``): each indexes
only the profiles it owns.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from shared.events import InterestProfile, MessagePublished


@dataclass(frozen=True)
class Match:
    volunteer_id: str
    matched_interests: tuple[str, ...]
    audience_size: int
    matched_regions: tuple[str, ...] = ()


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

    @property
    def key(self) -> str:
        """How streams name the partition: its durable consumer, its watermark."""
        return f"{self.index}-of-{self.count}"


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


Keys = tuple[str, ...]
Values = tuple[int, ...]


class _Entry:
    """One volunteer's profile as the index keeps it, compactly (a hundred
    thousand of them add up): each count map is a sorted tuple of names,
    shared between the volunteers who have the same ones, and a tuple of
    counts; no zero counts, no pydantic object."""

    __slots__ = ("raw_k", "raw_v", "aud_k", "aud_v", "reg_k", "reg_v", "loc_k", "loc_v", "updated", "reach")

    def __init__(self, raw: tuple[Keys, Values], regions: tuple[Keys, Values], locales: tuple[Keys, Values],
                 updated: float) -> None:
        # raw: every interest with contacts, known or not (the taxonomy may grow)
        self.raw_k, self.raw_v = raw
        self.aud_k, self.aud_v = raw
        self.reg_k, self.reg_v = regions
        self.loc_k, self.loc_v = locales
        self.updated = updated
        self.reach = 0

    def filter(self, taxonomy: frozenset[str] | None, share: Callable[[Keys], Keys]) -> Keys:
        """Keep the known interests; returns the unknown ones."""
        if taxonomy is None:
            self.aud_k, self.aud_v = self.raw_k, self.raw_v
            unknown: Keys = ()
        else:
            kept = [(k, v) for k, v in zip(self.raw_k, self.raw_v, strict=True) if is_known_interest(k, taxonomy)]
            self.aud_k, self.aud_v = share(tuple(k for k, _ in kept)), tuple(v for _, v in kept)
            unknown = tuple(k for k in self.raw_k if not is_known_interest(k, taxonomy))
        self.reach = max(max(self.aud_v, default=0), sum(self.reg_v), sum(self.loc_v))
        return unknown


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
        self._keys: dict[Keys, Keys] = {}  # one tuple per distinct set of names

    def _share(self, keys: Keys) -> Keys:
        return self._keys.setdefault(keys, keys)

    def _compact(self, counts: dict[str, int]) -> tuple[Keys, Values]:
        kept = sorted((k, n) for k, n in counts.items() if n > 0)
        return self._share(tuple(sys.intern(k) for k, _ in kept)), tuple(n for _, n in kept)

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
        updated = profile.occurred_at.timestamp()
        if old is not None and updated < old.updated:
            return Indexed(False, "out_of_order")
        raw = self._compact({i: sum(per_channel.values()) for i, per_channel in profile.audience.items()})
        entry = _Entry(raw, self._compact(profile.regions), self._compact(profile.locales), updated)
        unknown = entry.filter(self.taxonomy, self._share)
        vol = sys.intern(vol)
        if old is not None:
            self._unlink(vol, old)
        self._entries[vol] = entry
        self._link(vol, entry)
        return Indexed(True, None, unknown)

    def set_taxonomy(self, names: Iterable[str]) -> dict[str, tuple[str, ...]]:
        """Apply a new taxonomy to every held profile (it changes rarely).
        Returns, per volunteer, the interests now left out. An empty
        taxonomy is none at all, as contacts has it."""
        self.taxonomy = frozenset(names) or None
        left_out = {}
        for vol, entry in self._entries.items():
            self._unlink(vol, entry)
            unknown = entry.filter(self.taxonomy, self._share)
            self._link(vol, entry)
            if unknown:
                left_out[vol] = unknown
        return left_out

    def _link(self, vol: str, entry: _Entry) -> None:
        for table, keys in ((self._by_interest, entry.aud_k), (self._by_region, entry.reg_k),
                            (self._by_locale, entry.loc_k)):
            for key in keys:
                table.setdefault(key, set()).add(vol)
        if entry.reach:
            self._reachable.add(vol)

    def _unlink(self, vol: str, entry: _Entry) -> None:
        for table, keys in ((self._by_interest, entry.aud_k), (self._by_region, entry.reg_k),
                            (self._by_locale, entry.loc_k)):
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
                matched = tuple(k for k in entry.aud_k if k in wanted)
                size = max(v for k, v in zip(entry.aud_k, entry.aud_v, strict=True) if k in wanted)
            else:
                matched = entry.aud_k  # sorted, and shared
                size = entry.reach
            if regions:
                in_regions = tuple(k for k in entry.reg_k if k in regions)
                size = min(size, sum(v for k, v in zip(entry.reg_k, entry.reg_v, strict=True) if k in regions))
            else:
                in_regions = entry.reg_k  # sorted, and shared
            if locales:
                size = min(size, sum(v for k, v in zip(entry.loc_k, entry.loc_v, strict=True) if k in locales))
            matches.append(Match(vol, matched, size, in_regions))
        return matches


_NOBODY: frozenset[str] = frozenset()
