"""Pacing suggestions: a daily cap per volunteer and quiet hours.

Pure: every method takes the time as an argument, so the rules are tested
with explicit clocks and replayed over the past when the matcher restarts.

- A suggestion goes out at once unless it is the quiet hours (local time of
  the campaign) or the volunteer already had ``daily_cap`` suggestions that
  local day; otherwise it waits in the volunteer's queue.
- A queue is released at an *opening* — the end of the quiet hours, or the
  start of a day that does not begin inside them — highest priority first,
  then highest score, then oldest: as many as the day's cap allows; the rest
  wait for the next opening.
- A waiting suggestion leaves the queue when its message is withdrawn, when
  it expires (``expires_at``), or when it has waited ``max_wait`` (stale: a
  suggestion days late is noise, and the queue must not grow without end
  when a campaign publishes more than volunteers can take).
- A withdrawn suggestion that already went out still counts for the day.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo


@dataclass(frozen=True, slots=True)
class Pending:
    """One suggestion on its way: published now, or waiting."""

    message_id: str
    volunteer_id: str
    matched_interests: tuple[str, ...]
    audience_size: int
    score: float
    priority: int = 1
    expires_at: datetime | None = None
    matched_regions: tuple[str, ...] = ()

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass
class Outcome:
    """What a queue operation decided: ``publish`` (new, going out now),
    ``released`` (had waited, going out now), ``queued`` (now waiting),
    ``dropped`` (with the reason: withdrawn, expired or stale)."""

    publish: list[Pending] = field(default_factory=list)
    released: list[Pending] = field(default_factory=list)
    queued: list[Pending] = field(default_factory=list)
    dropped: list[tuple[Pending, str]] = field(default_factory=list)

    @property
    def outgoing(self) -> list[Pending]:
        return self.publish + self.released

    def extend(self, other: Outcome) -> Outcome:
        self.publish += other.publish
        self.released += other.released
        self.queued += other.queued
        self.dropped += other.dropped
        return self


@dataclass(frozen=True)
class Schedule:
    """The pacing rules. Quiet hours run from ``quiet_start`` to
    ``quiet_end`` (whole hours, local time; across midnight when start >
    end; none when equal)."""

    daily_cap: int = 5
    quiet_start: int = 21
    quiet_end: int = 8
    timezone: str = "Europe/Paris"
    max_wait: timedelta = timedelta(hours=48)

    def __post_init__(self) -> None:
        if self.daily_cap < 1:
            raise ValueError("daily_cap must be at least 1")
        for hour in (self.quiet_start, self.quiet_end):
            if not 0 <= hour <= 23:
                raise ValueError(f"quiet hours are whole hours 0-23, not {hour}")
        ZoneInfo(self.timezone)  # fails loudly on an unknown zone

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def day(self, at: datetime) -> date:
        return at.astimezone(self.tz).date()

    def quiet(self, at: datetime) -> bool:
        start, end = self.quiet_start, self.quiet_end
        if start == end:
            return False
        hour = at.astimezone(self.tz).hour
        return start <= hour < end if start < end else hour >= start or hour < end

    def next_opening(self, after: datetime) -> datetime:
        """The first moment strictly after ``after`` when a queue may be
        released: a quiet-hours end, or a day start outside quiet hours."""
        local_day = after.astimezone(self.tz).date()
        found = []
        for offset in range(3):
            d = local_day + timedelta(days=offset)
            hours = {0} if self.quiet_start == self.quiet_end else {0, self.quiet_end}
            for hour in hours:
                moment = datetime.combine(d, time(hour), tzinfo=self.tz)
                if moment > after and not self.quiet(moment):
                    found.append(moment)
        return min(found)

    def opened_since(self, since: datetime | None, now: datetime) -> bool:
        """Whether an opening came after ``since`` (always, without one):
        the release pass drains queues, and the watermark moves, once per opening."""
        return since is None or self.next_opening(since) <= now


@dataclass
class _Waiting:
    """One message's waiting suggestions."""

    expires_at: datetime | None
    since: datetime
    volunteers: set[str] = field(default_factory=set)


class SuggestionQueue:
    def __init__(self, schedule: Schedule | None = None) -> None:
        self.schedule = schedule or Schedule()
        self._queues: dict[str, list[tuple[tuple, int, Pending]]] = {}  # volunteer -> heap
        self._messages: dict[str, _Waiting] = {}
        self._sent: dict[str, tuple[date, int]] = {}  # volunteer -> (local day, suggestions sent)
        self._opened_at: datetime | None = None  # last release pass outside quiet hours
        self._tie = itertools.count()

    def __len__(self) -> int:
        return sum(len(w.volunteers) for w in self._messages.values())

    def waiting(self, volunteer_id: str) -> list[Pending]:
        """A volunteer's queue, in release order."""
        return [p for *_, p in sorted(self._queues.get(volunteer_id, []))]

    def sent_today(self, volunteer_id: str, now: datetime) -> int:
        day, n = self._sent.get(volunteer_id, (None, 0))
        return n if day == self.schedule.day(now) else 0

    # -- the three operations -----------------------------------------------------------

    def offer(self, items: list[Pending], now: datetime) -> Outcome:
        """New suggestions: each goes out now or waits."""
        out = Outcome()
        quiet = self.schedule.quiet(now)
        day = self.schedule.day(now)
        cap = self.schedule.daily_cap
        for p in items:
            vol = p.volunteer_id
            if p.expired(now):
                out.dropped.append((p, "expired"))
                continue
            waiting = self._messages.get(p.message_id)
            if waiting is not None and vol in waiting.volunteers:
                continue  # offered twice: already waiting
            sent_day, sent = self._sent.get(vol, (day, 0))
            sent = sent if sent_day == day else 0
            if not quiet and sent < cap and vol not in self._queues:
                self._sent[vol] = (day, sent + 1)
                out.publish.append(p)
                continue
            self._push(p, now)
            if quiet:
                out.queued.append(p)
                continue
            # Outside quiet hours a queue under the cap means a release is
            # due (the periodic pass has not run yet): release it now, in order.
            released = self._drain(vol, day, now, out)
            if p in released:
                out.released.remove(p)
                out.publish.append(p)
            else:
                out.queued.append(p)
        return out

    def release(self, now: datetime) -> Outcome:
        """The periodic pass: drop what expired or went stale; at the first
        pass after an opening, release every queue up to the day's cap."""
        out = Outcome()
        for message_id, waiting in list(self._messages.items()):
            if waiting.expires_at is not None and waiting.expires_at <= now:
                self._drop_message(message_id, "expired", out)
            elif now - waiting.since >= self.schedule.max_wait:
                self._drop_message(message_id, "stale", out)
        if self.schedule.quiet(now):
            return out
        if not self.schedule.opened_since(self._opened_at, now):
            return out  # no opening since the last pass: every queue left is at its cap
        self._opened_at = now
        day = self.schedule.day(now)
        for vol in list(self._queues):
            self._drain(vol, day, now, out)
        return out

    def withdraw(self, message_id: str, reason: str = "withdrawn") -> Outcome:
        """A withdrawn (or expired) message leaves every queue."""
        out = Outcome()
        self._drop_message(message_id, reason, out)
        return out

    # -- inside --------------------------------------------------------------------------

    def _push(self, p: Pending, now: datetime) -> None:
        waiting = self._messages.get(p.message_id)
        if waiting is None:
            waiting = self._messages[p.message_id] = _Waiting(p.expires_at, now)
        waiting.volunteers.add(p.volunteer_id)
        order = (-p.priority, -p.score, waiting.since)
        heapq.heappush(self._queues.setdefault(p.volunteer_id, []), (order, next(self._tie), p))

    def _forget(self, p: Pending) -> None:
        waiting = self._messages.get(p.message_id)
        if waiting is not None:
            waiting.volunteers.discard(p.volunteer_id)
            if not waiting.volunteers:
                del self._messages[p.message_id]

    def _drain(self, vol: str, day: date, now: datetime, out: Outcome) -> list[Pending]:
        heap = self._queues.get(vol)
        sent_day, sent = self._sent.get(vol, (day, 0))
        sent = sent if sent_day == day else 0
        released = []
        while heap and sent < self.schedule.daily_cap:
            *_, p = heapq.heappop(heap)
            self._forget(p)
            if p.expired(now):
                out.dropped.append((p, "expired"))
                continue
            sent += 1
            released.append(p)
        if released:
            self._sent[vol] = (day, sent)
            out.released += released
        if not heap:
            self._queues.pop(vol, None)
        return released

    def _drop_message(self, message_id: str, reason: str, out: Outcome) -> None:
        waiting = self._messages.pop(message_id, None)
        if waiting is None:
            return
        for vol in waiting.volunteers:
            heap = self._queues.get(vol, [])
            kept = [e for e in heap if e[2].message_id != message_id]
            out.dropped += [(e[2], reason) for e in heap if e[2].message_id == message_id]
            if kept:
                heapq.heapify(kept)
                self._queues[vol] = kept
            else:
                self._queues.pop(vol, None)
