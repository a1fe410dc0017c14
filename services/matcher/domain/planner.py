"""What the matcher decides, without I/O: which suggestions go out, when,
and which events it refuses. The NATS handlers feed it events with the
stream's sequence and timestamp, and publish what it returns.

State across restarts
---------------------
Nothing is stored by the matcher itself. On start it replays, in order, the
FEED stream (campaign messages and withdrawals: a small stream) through
``rebuild``, at each event's stream timestamp, against the profiles it has
just re-indexed: the same pure rules then give back today's counts per
volunteer and the waiting queues, as the previous process had them.

- A message the durable consumer delivers after the rebuild already saw it
  (same stream sequence) was not acked by the previous process — it died
  mid-way, or was down when the message came: its suggestions are published
  again under the same ids. JetStream drops those it already stored (within
  the SUGGESTIONS dedupe window); contacts and feed store by suggestion id.
- What the rebuild says went out in the last ``dedupe_window`` is published
  again at start, for the same reason: a release interrupted by a crash is
  completed, and JetStream drops the copies of what had gone out.
- After each release pass, the matcher notes up to when it released
  (``ReleaseWatermark``, one per partition, last per subject). A queue
  opening the rebuild finds after that note, and older than the dedupe
  window, never ran — no replica of the partition was up: its suggestions go
  out at start, late rather than lost (``released_late``). Without a note (a
  first start, or a new partition layout) such openings are taken as done
  (``assumed_released``).
- Limit: the rebuild uses today's profiles, so a volunteer whose profile
  changed since a message may be counted one suggestion off for that day.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from services.matcher.domain.index import ProfileIndex, score, suggestion_id
from services.matcher.domain.queue import Outcome, Pending, SuggestionQueue
from shared.events import MessagePublished, MessageWithdrawn, Suggestion


@dataclass(frozen=True)
class Stored:
    """An event as JetStream stored it."""

    seq: int
    at: datetime
    event: MessagePublished | MessageWithdrawn


@dataclass
class Handled:
    """A message this partition handled (within the horizon)."""

    seq: int
    message: MessagePublished
    at: datetime
    published: set[str] = field(default_factory=set)  # volunteers it went out to


def suggestion(p: Pending, at: datetime) -> Suggestion:
    return Suggestion(
        suggestion_id=suggestion_id(p.message_id, p.volunteer_id),
        volunteer_id=p.volunteer_id,
        message_id=p.message_id,
        matched_interests=p.matched_interests,
        audience_size=p.audience_size,
        score=p.score,
        matched_regions=p.matched_regions,
        occurred_at=at,
    )


@dataclass
class Decision:
    """What the adapter must do and count. ``publish`` holds what goes out;
    ``suggestions()`` makes the events lazily, so a hundred thousand of them
    are built chunk by chunk while the previous chunk is being published."""

    publish: list[Pending] = field(default_factory=list)
    at: datetime | None = None
    new: int = 0  # of ``publish``: first time out
    released: int = 0  # of ``publish``: had waited
    republished: int = 0  # of ``publish``: out again after a redelivery or a restart
    queued: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    rejected: str | None = None
    assumed_released: int = 0  # rebuild only: released at an opening we cannot tell ran (module doc)
    released_late: int = 0  # rebuild only: of ``publish``, released at an opening that never ran

    def suggestions(self) -> Iterator[Suggestion]:
        for p in self.publish:
            assert self.at is not None  # a decision that publishes always says when
            yield suggestion(p, self.at)


class Planner:
    def __init__(
        self,
        index: ProfileIndex,
        queue: SuggestionQueue,
        *,
        horizon: timedelta | None = None,
        dedupe_window: timedelta = timedelta(minutes=2),
    ) -> None:
        self.index = index
        self.queue = queue
        # How far back a message still matters: its suggestions may wait
        # ``max_wait``, and today's counts need the last day.
        self.horizon = horizon or max(queue.schedule.max_wait, timedelta(days=1)) + timedelta(hours=1)
        self.dedupe_window = dedupe_window
        self.handled: dict[str, Handled] = {}
        self.withdrawn: dict[str, str] = {}  # message id -> reason

    # -- live events -------------------------------------------------------------------

    def handle(self, message: MessagePublished, *, seq: int, stored_at: datetime, now: datetime) -> Decision:
        """A message the durable consumer delivers."""
        known = self.handled.get(message.message_id)
        if known is not None:
            if known.seq != seq:
                return Decision(rejected="duplicate_message")  # published twice by feed
            return self._republish(known, now)  # not acked before: out again, same ids
        if message.message_id in self.withdrawn:
            return Decision(rejected="withdrawn_message")
        if now - stored_at > self.horizon:
            return Decision(rejected="stale_message")
        if message.expires_at is not None and message.expires_at <= now:
            return Decision(rejected="expired_message")
        out = self.queue.offer(self._pending(message), now)
        self.handled[message.message_id] = Handled(seq, message, now)
        return self._decide(out, now)

    def withdraw(self, event: MessageWithdrawn, now: datetime) -> Decision:
        self.withdrawn[event.message_id] = event.reason
        return self._decide(self.queue.withdraw(event.message_id, event.reason), now)

    def tick(self, now: datetime) -> Decision:
        """The periodic pass: releases, expiries, and forgetting what is past
        the horizon."""
        decision = self._decide(self.queue.release(now), now)
        for message_id, handled in list(self.handled.items()):
            if now - handled.at > self.horizon:
                del self.handled[message_id]
        return decision

    # -- restart -----------------------------------------------------------------------

    def rebuild(self, history: list[Stored], now: datetime, released_until: datetime | None = None) -> Decision:
        """Replay the FEED stream's events (sorted here by sequence) at their
        stored times, with the queue's openings in between. Returns, to
        publish (again), what went out within the dedupe window and what
        openings after ``released_until`` (the partition's watermark) should
        have released."""
        oldest = now - self.horizon
        log: list[tuple[datetime, Pending, bool]] = []  # (when, what, released at an opening)
        clock: datetime | None = None
        for stored in sorted(history, key=lambda s: s.seq):
            event = stored.event
            if stored.at >= oldest:
                log += self._openings(clock, stored.at)
                clock = stored.at
            if isinstance(event, MessageWithdrawn):
                self.withdrawn[event.message_id] = event.reason
                self.queue.withdraw(event.message_id, event.reason)
                continue
            if stored.at < oldest or event.message_id in self.handled or event.message_id in self.withdrawn:
                continue
            if event.expires_at is not None and event.expires_at <= stored.at:
                continue
            self.handled[event.message_id] = Handled(stored.seq, event, stored.at)
            out = self.queue.offer(self._pending(event), stored.at)
            for p in out.outgoing:
                self._sent(p)
            log += [(stored.at, p, False) for p in out.outgoing]
        log += self._openings(clock, now)
        old_openings = [(at, p) for at, p, opening in log if opening and now - at > self.dedupe_window]
        missed = [p for at, p in old_openings if released_until is not None and at > released_until]
        recent = [p for at, p, _ in log if now - at <= self.dedupe_window]
        return Decision(
            publish=recent + missed, at=now,
            republished=len(recent),
            released_late=len(missed),
            queued=len(self.queue),
            assumed_released=len(old_openings) if released_until is None else 0,
        )

    def _openings(self, since: datetime | None, until: datetime) -> list[tuple[datetime, Pending, bool]]:
        """Run the queue's release passes at each opening in (since, until]."""
        if since is None:
            return []
        released = []
        opening = self.queue.schedule.next_opening(since)
        while opening <= until:
            out = self.queue.release(opening)
            for p in out.outgoing:
                self._sent(p)
            released += [(opening, p, True) for p in out.outgoing]
            opening = self.queue.schedule.next_opening(opening)
        return released

    # -- inside --------------------------------------------------------------------------

    def _pending(self, message: MessagePublished) -> list[Pending]:
        return [
            Pending(message.message_id, m.volunteer_id, m.matched_interests, m.audience_size,
                    score(m.audience_size, message.priority), message.priority, message.expires_at,
                    m.matched_regions)
            for m in self.index.match(message)
        ]

    def _sent(self, p: Pending) -> None:
        handled = self.handled.get(p.message_id)
        if handled is not None:
            handled.published.add(p.volunteer_id)

    def _decide(self, out: Outcome, now: datetime) -> Decision:
        for p in out.outgoing:
            self._sent(p)
        return Decision(
            publish=out.outgoing, at=now,
            new=len(out.publish),
            released=len(out.released),
            queued=len(out.queued),
            dropped=Counter(reason for _, reason in out.dropped),
        )

    def _republish(self, known: Handled, now: datetime) -> Decision:
        matches = [p for p in self._pending(known.message) if p.volunteer_id in known.published]
        return Decision(publish=matches, at=now, republished=len(matches))
