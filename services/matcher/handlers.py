"""The matcher's NATS adapters: they turn what the streams deliver, and the
release timer, into use-case calls (``usecases``), and hold each durable
delivery until the queues are rebuilt.

Subscriptions (all through ``shared.messaging``):
- ``contacts.profiles.*``: replayed (last per volunteer) into the index, then live;
- ``feed.taxonomy``: replayed (the latest), then live;
- ``feed.messages.published`` and ``feed.messages.withdrawn``: replayed from
  the start of FEED to rebuild the queues (``domain.planner`` module doc), then
  withdrawals live;
- ``feed.messages.published`` again, through this partition's own durable
  consumer (``matcher-messages-<i>-of-<n>``): every replica sees every
  message and matches it against the volunteers it owns;
- ``matcher.state.<i>-of-<n>``: the partition's release watermark, replayed
  on start and written after each release pass (``domain.planner`` module doc).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

import structlog
from faststream.nats import DeliverPolicy

from services.matcher.domain import Stored
from services.matcher.outbound import Outbound
from services.matcher.store import MatcherState
from services.matcher.usecases.apply_taxonomy import apply_taxonomy
from services.matcher.usecases.index_profile import index_profile
from services.matcher.usecases.match_message import match_message
from services.matcher.usecases.rebuild import rebuild
from services.matcher.usecases.release_pass import release_pass
from services.matcher.usecases.restore_watermark import restore_watermark
from services.matcher.usecases.withdraw_message import withdraw_message
from shared.messaging import Bus, Replay
from shared.catalogue import (
    MESSAGE_PUBLISHED,
    MESSAGE_WITHDRAWN,
    PROFILE_UPDATED,
    RELEASE_WATERMARK,
    TAXONOMY_PUBLISHED,
    SubjectSpec,
)
from shared.events import MessagePublished, MessageWithdrawn, utcnow
from shared.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

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


class Handlers:
    """Every subscription of one matcher replica, and its release timer."""

    def __init__(self, bus: Bus, state: MatcherState, outbound: Outbound, *,
                 release_seconds: float, clock: Clock = utcnow) -> None:
        self.bus, self.state, self.outbound, self.clock = bus, state, outbound, clock
        self.release_seconds = release_seconds
        self.durable = f"matcher-messages-{state.partition.key}"
        self.taxonomy = Replay(bus, TAXONOMY_PUBLISHED, lambda event: apply_taxonomy(state, event),
                               describe=lambda: f"{len(state.index.taxonomy or ())} terms")
        # Messages wait until the profiles stream is replayed, so no volunteer
        # is missed because the matcher just started.
        self.profiles = Replay(bus, PROFILE_UPDATED, lambda event: index_profile(state, event),
                               policy=DeliverPolicy.LAST_PER_SUBJECT,
                               describe=lambda: f"{len(state.index)} profiles")
        self.history = FeedHistory(bus, self._withdraw)
        self.watermark = Replay(bus, RELEASE_WATERMARK, lambda event: restore_watermark(state, event),
                                policy=DeliverPolicy.LAST_PER_SUBJECT,
                                describe=lambda: f"released until {state.released_until}")
        self._tasks: set[asyncio.Task] = set()

        @bus.subscriber(MESSAGE_PUBLISHED, durable=self.durable, batch_size=1, ack_wait=120.0)
        async def match(message: MessagePublished, msg) -> None:
            await state.rebuilt.wait()
            meta = msg.raw_message.metadata
            await match_message(state, outbound, message, seq=meta.sequence.stream, stored_at=meta.timestamp,
                                now=self.clock())

    async def _withdraw(self, event: MessageWithdrawn) -> None:
        withdraw_message(self.state, event, self.clock())

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
        await cancel_and_wait(list(self._tasks))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _rebuild(self) -> None:
        for step in (self.taxonomy.caught_up, self.profiles.caught_up, self.history.caught_up,
                     self.watermark.caught_up):
            await step.wait()
        await rebuild(self.state, self.outbound, self.history.take(), self.clock())

    async def _release_loop(self) -> None:
        await self.state.rebuilt.wait()
        while True:
            await asyncio.sleep(self.release_seconds)
            try:
                await release_pass(self.state, self.outbound, self.clock())
            except Exception as exc:  # the loop must outlive one bad pass
                log.error("queue.release_failed", error=type(exc).__name__)
