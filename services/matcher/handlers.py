"""The matcher's NATS adapters: rebuild the index and the queues from
JetStream, match each message, publish what the planner decides.

Subscriptions (all through ``shared.bus``):
- ``contacts.profiles.*``: replayed (last per volunteer) into the index, then live;
- ``feed.taxonomy``: replayed (the latest), then live;
- ``feed.messages.published`` and ``feed.messages.withdrawn``: replayed from
  the start of FEED to rebuild the queues (``planner`` module doc), then
  withdrawals live;
- ``feed.messages.published`` again, through this partition's own durable
  consumer (``matcher-messages-<i>-of-<n>``): every replica sees every
  message and matches it against the volunteers it owns;
- ``matcher.state.<i>-of-<n>``: the partition's release watermark, replayed
  on start and written after each release pass (``planner`` module doc).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Coroutine, Iterable
from datetime import datetime
from typing import Any

import structlog
from faststream.nats import DeliverPolicy
from prometheus_client import Counter, Gauge

from services.matcher.domain import Decision, Planner, ProfileIndex, Stored, SuggestionQueue
from services.matcher.settings import MatcherSettings
from shared.bus import Bus, Replay
from shared.catalogue import (
    FEED_STREAM,
    MESSAGE_PUBLISHED,
    MESSAGE_WITHDRAWN,
    PROFILE_UPDATED,
    RELEASE_WATERMARK,
    SUGGESTION_MADE,
    TAXONOMY_PUBLISHED,
    SubjectSpec,
)
from shared.events import (
    InterestProfile,
    MessagePublished,
    MessageWithdrawn,
    ReleaseWatermark,
    Suggestion,
    Taxonomy,
    utcnow,
)

log = structlog.get_logger(__name__)

PROFILES_INDEXED = Gauge("maillage_matcher_profiles", "Volunteer profiles in the index (this partition).")
SUGGESTIONS = Counter("maillage_matcher_suggestions_total", "Suggestions published (new or released).")
QUEUED = Counter("maillage_matcher_suggestions_queued_total",
                 "Suggestions put in a volunteer's queue (quiet hours or daily cap).")
RELEASED = Counter("maillage_matcher_suggestions_released_total", "Waiting suggestions published.")
DROPPED = Counter("maillage_matcher_suggestions_dropped_total",
                  "Waiting suggestions dropped: withdrawn, expired or stale.", ["reason"])
REPUBLISHED = Counter("maillage_matcher_suggestions_republished_total",
                      "Suggestions published again after a redelivery or a restart (deduped by JetStream).")
REJECTED = Counter("maillage_matcher_rejected_total",
                   "Events refused or trimmed: unknown_interest (per interest), out_of_order_profile, "
                   "duplicate_message, stale_message, expired_message, withdrawn_message.", ["reason"])
WAITING = Gauge("maillage_matcher_waiting", "Suggestions waiting in queues (this partition).")
MESSAGES_MATCHED = Counter("maillage_matcher_messages_matched_total", "Messages matched.")

Clock = Callable[[], datetime]


class FeedHistory:
    """FEED replayed from its start when the matcher starts (campaign
    messages and withdrawals: a small stream), for the planner's rebuild;
    then withdrawals as they come. Live publications reach the matcher
    through its durable consumer instead."""

    SPECS = (MESSAGE_PUBLISHED, MESSAGE_WITHDRAWN)

    def __init__(self, bus: Bus, on_withdrawal: Callable[[MessageWithdrawn], Coroutine[Any, Any, None]]) -> None:
        self.bus = bus
        self.records: list[Stored] = []
        self.caught_up = asyncio.Event()
        self.live = False
        self._on_withdrawal = on_withdrawal
        # each subject is caught up once its last stored message is read, or at
        # once when it holds none (an empty subject delivers nothing)
        self._done = {spec.pattern: False for spec in self.SPECS}
        for spec in self.SPECS:
            self._subscribe(spec)

    def _subscribe(self, spec: SubjectSpec) -> None:
        @self.bus.subscriber(spec, replay=DeliverPolicy.ALL)
        async def replay_feed(event: MessagePublished | MessageWithdrawn, msg) -> None:
            if self.live:
                if isinstance(event, MessageWithdrawn):
                    await self._on_withdrawal(event)
                return
            meta = msg.raw_message.metadata
            self.records.append(Stored(meta.sequence.stream, meta.timestamp, event))
            if meta.num_pending == 0:
                self._caught_up(spec)

    def _caught_up(self, spec: SubjectSpec) -> None:
        self._done[spec.pattern] = True
        if all(self._done.values()):
            self.caught_up.set()

    async def prepare(self) -> None:
        await self.bus.connect()
        for spec in self.SPECS:
            if await self.bus.stored_messages(spec) == 0:
                self._caught_up(spec)

    def take(self) -> list[Stored]:
        """What was replayed; from now on, only withdrawals pass, live."""
        self.live = True
        records, self.records = self.records, []
        return records


class Matcher:
    CHUNK = 2000  # suggestions per publish_many call

    def __init__(self, bus: Bus, settings: MatcherSettings | None = None, *, clock: Clock = utcnow) -> None:
        settings = settings or MatcherSettings()
        self.bus = bus
        self.clock = clock
        self.partition = settings.owned
        self.release_seconds = settings.release_seconds
        self.index = ProfileIndex(self.partition)
        self.queue = SuggestionQueue(settings.schedule)
        self.planner = Planner(self.index, self.queue)
        self.durable = f"matcher-messages-{self.partition.index}-of-{self.partition.count}"
        self.taxonomy = Replay(bus, TAXONOMY_PUBLISHED, self.apply_taxonomy,
                               describe=lambda: f"{len(self.index.taxonomy or ())} terms")
        # Messages wait until the profiles stream is replayed, so no volunteer
        # is missed because the matcher just started.
        self.profiles = Replay(bus, PROFILE_UPDATED, self.index_profile,
                               policy=DeliverPolicy.LAST_PER_SUBJECT,
                               describe=lambda: f"{len(self.index)} profiles")
        self.history = FeedHistory(bus, self.withdraw)
        self.partition_key = f"{self.partition.index}-of-{self.partition.count}"
        self.released_until: datetime | None = None
        self.watermark = Replay(bus, RELEASE_WATERMARK, self._read_watermark,
                                policy=DeliverPolicy.LAST_PER_SUBJECT,
                                describe=lambda: f"released until {self.released_until}")
        self.rebuilt = asyncio.Event()
        self._unsent: list[Suggestion] = []
        self._tasks: set[asyncio.Task] = set()

    # -- profiles and taxonomy ---------------------------------------------------------

    def index_profile(self, profile: InterestProfile) -> None:
        result = self.index.upsert(profile)
        if result.reason == "out_of_order":
            REJECTED.labels("out_of_order_profile").inc()
            log.info("profile.ignored", volunteer_id=profile.volunteer_id, reason="older than the indexed one")
        if result.unknown:
            REJECTED.labels("unknown_interest").inc(len(result.unknown))
            log.warning("profile.interests_rejected", volunteer_id=profile.volunteer_id,
                        interests=list(result.unknown), reason="not in the campaign's taxonomy")
        PROFILES_INDEXED.set(len(self.index))

    def apply_taxonomy(self, taxonomy: Taxonomy) -> None:
        first = self.index.taxonomy is None
        left_out = self.index.set_taxonomy(term.name for term in taxonomy.terms)
        if first and left_out:  # profiles indexed before the taxonomy was read: count them once
            REJECTED.labels("unknown_interest").inc(sum(len(v) for v in left_out.values()))
        log.info("taxonomy.applied", terms=len(taxonomy.terms), profiles_with_unknown_interests=len(left_out))

    # -- messages ------------------------------------------------------------------------

    def register(self) -> None:
        @self.bus.subscriber(MESSAGE_PUBLISHED, durable=self.durable, batch_size=1, ack_wait=120.0)
        async def match_message(message: MessagePublished, msg) -> None:
            await self.rebuilt.wait()
            meta = msg.raw_message.metadata
            started = time.perf_counter()
            decision = self.planner.handle(message, seq=meta.sequence.stream, stored_at=meta.timestamp,
                                           now=self.clock())
            matched_in = time.perf_counter() - started
            self._count(decision)
            if decision.rejected:
                log.warning("message.rejected", message_id=message.message_id, reason=decision.rejected)
                return
            await self._publish(decision.suggestions())  # an error: nacked, redelivered, published again
            if not decision.republished:
                MESSAGES_MATCHED.inc()
            log.info("message.matched", message_id=message.message_id, partition=str(self.partition),
                     published=decision.new, queued=decision.queued, republished=decision.republished,
                     match_seconds=round(matched_in, 3), seconds=round(time.perf_counter() - started, 3))

    async def withdraw(self, event: MessageWithdrawn) -> None:
        decision = self.planner.withdraw(event, self.clock())
        self._count(decision)
        log.info("message.withdrawn", message_id=event.message_id, reason=event.reason,
                 dropped=sum(decision.dropped.values()))

    # -- lifecycle -----------------------------------------------------------------------

    async def prepare(self) -> None:
        await self.taxonomy.prepare()
        await self.profiles.prepare()
        await self.history.prepare()
        await self.watermark.prepare()
        self._spawn(self._rebuild())

    async def start_background(self) -> None:
        self._spawn(self._release_loop())

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _rebuild(self) -> None:
        for step in (self.taxonomy.caught_up, self.profiles.caught_up, self.history.caught_up,
                     self.watermark.caught_up):
            await step.wait()
        records = self.history.take()
        now = self.clock()
        decision = self.planner.rebuild(records, now, self.released_until)
        WAITING.set(len(self.queue))
        log.info("queue.rebuilt", partition=str(self.partition), events=len(records), waiting=len(self.queue),
                 published_again=decision.republished, released_late=decision.released_late,
                 assumed_released=decision.assumed_released)
        self.rebuilt.set()
        REPUBLISHED.inc(decision.republished)
        RELEASED.inc(decision.released_late)
        await self._publish(decision.suggestions(), retry=True)
        await self._note_released(now)

    async def _release_loop(self) -> None:
        await self.rebuilt.wait()
        while True:
            await asyncio.sleep(self.release_seconds)
            try:
                now = self.clock()
                decision = self.planner.tick(now)
                self._count(decision)
                if decision.publish or decision.dropped:
                    log.info("queue.released", released=decision.released, dropped=dict(decision.dropped),
                             waiting=len(self.queue))
                await self._publish(decision.suggestions(), retry=True)
                await self._note_released(now)
            except Exception as exc:  # the loop must outlive one bad pass
                log.error("queue.release_failed", error=type(exc).__name__)

    # -- publishing ------------------------------------------------------------------------

    async def _publish(self, suggestions: Iterable[Suggestion], *, retry: bool = False) -> None:
        """Publish with Nats-Msg-Id = suggestion id, in chunks: each chunk's
        events are built while the previous one is acked, and the event loop
        never holds a hundred thousand tasks at once. With ``retry`` (there
        is no message to nack), what fails is kept and tried at the next pass."""
        if retry:
            suggestions, self._unsent = itertools.chain(self._unsent, suggestions), []
        pending = iter(suggestions)
        while chunk := list(itertools.islice(pending, self.CHUNK)):
            try:
                await self.bus.publish_many(SUGGESTION_MADE, [(s, (s.volunteer_id,), s.suggestion_id) for s in chunk])
            except Exception as exc:
                if not retry:
                    raise
                self._unsent = chunk + list(pending)
                log.error("suggestions.publish_failed", count=len(self._unsent), error=type(exc).__name__)
                return

    def _read_watermark(self, event: ReleaseWatermark) -> None:
        if event.partition == self.partition_key:
            self.released_until = max(self.released_until or event.released_until, event.released_until)

    async def _note_released(self, now: datetime) -> None:
        """Move the watermark once an opening has passed and everything
        released is out (nothing left unsent): one small message per
        opening, not per pass."""
        if self._unsent:
            return
        if not self.queue.schedule.opened_since(self.released_until, now):
            return
        mark = ReleaseWatermark(partition=self.partition_key, released_until=now)
        await self.bus.publish(RELEASE_WATERMARK, mark, self.partition_key,
                               msg_id=f"{self.partition_key}:{now.isoformat()}")
        self.released_until = now

    def _count(self, decision: Decision) -> None:
        SUGGESTIONS.inc(decision.new + decision.released)
        QUEUED.inc(decision.queued)
        RELEASED.inc(decision.released)
        REPUBLISHED.inc(decision.republished)
        for reason, n in decision.dropped.items():
            DROPPED.labels(reason).inc(n)
        if decision.rejected:
            REJECTED.labels(decision.rejected).inc()
        WAITING.set(len(self.queue))

    async def ready(self) -> tuple[bool, str]:
        if not self.rebuilt.is_set():
            return False, "rebuilding queues from FEED"
        return True, f"{len(self.queue)} waiting"
