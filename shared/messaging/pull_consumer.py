"""A lean durable pull consumer for a hot subject, on nats-py directly.

FastStream's per-message machinery (a task, its middlewares, logging
scope, dependency resolution) cost the email dispatcher about a fifth of
its CPU per job (py-spy during ``make bench-email``). This consumer keeps
what ``Bus.subscriber`` guarantees and drops the rest: each message is
settled by the same ``settle`` (validation, ack, backoff nak, term, the
same metrics), and replies arrive on the service's own inbox prefix (its
NATS permissions).

Fed continuously: one loop fetches batches into a bounded queue and
``concurrency`` workers take from it, so no worker waits for a batch's
slowest message. Stopping drains: no more fetches, the queued and running
messages are handled, then the workers end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig

from shared.catalogue import SubjectSpec
from shared.messaging.settle import Meters, settle
from shared.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

RawHandler = Callable[[Any, Msg], Awaitable[None]]


class PullConsumer:
    def __init__(self, service: str, spec: SubjectSpec, durable: str, handler: RawHandler, *,
                 inbox: bytes, max_deliver: int, ack_wait: float, batch: int, concurrency: int) -> None:
        self.spec, self.durable, self.handler, self.inbox = spec, durable, handler, inbox
        self.max_deliver, self.ack_wait = max_deliver, ack_wait
        self.batch, self.concurrency = batch, concurrency
        self.meters = Meters.of(service, spec)
        self.queue: asyncio.Queue[Msg] | None = None
        self.fetcher: asyncio.Task | None = None
        self.workers: list[asyncio.Task] = []

    async def start(self, nc) -> None:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            self.spec.pattern, durable=self.durable, stream=self.spec.stream.name, inbox_prefix=self.inbox,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_deliver=self.max_deliver,
                                  ack_wait=self.ack_wait))
        # Twice the workers: the next messages are in hand while these run.
        self.queue = asyncio.Queue(maxsize=2 * self.concurrency)
        self.fetcher = asyncio.create_task(self._fetch(sub, self.queue), name=f"pull:{self.durable}")
        self.workers = [asyncio.create_task(self._work(self.queue), name=f"pull:{self.durable}:{i}")
                        for i in range(self.concurrency)]

    async def stop(self, timeout: float = 15.0) -> None:
        """No more fetches; the fetched messages are handled (up to
        ``timeout``), then the workers end. Idempotent."""
        if self.fetcher is None or self.queue is None:
            return
        # a message fetched but not queued is redelivered after ack_wait
        await cancel_and_wait([self.fetcher])
        try:
            await asyncio.wait_for(self.queue.join(), timeout)
        except TimeoutError:
            log.warning("consumer.drain_timeout", subject=self.spec.pattern, left=self.queue.qsize())
        await cancel_and_wait(self.workers)
        self.fetcher, self.workers = None, []

    async def _fetch(self, sub, queue: asyncio.Queue[Msg]) -> None:
        while True:
            room = max(1, min(self.batch, queue.maxsize - queue.qsize()))
            try:
                msgs = await sub.fetch(room, timeout=5.0)
            except (TimeoutError, NatsTimeout):
                continue
            except Exception as exc:  # a reconnect in progress: try again shortly
                log.warning("consumer.fetch_failed", subject=self.spec.pattern, error=type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            for msg in msgs:
                await queue.put(msg)

    async def _work(self, queue: asyncio.Queue[Msg]) -> None:
        while True:
            msg = await queue.get()
            try:
                await settle(self.spec, self.handler, msg, msg, self.meters)
            except Exception as exc:  # an ack that could not be sent: the message comes back
                log.error("consumer.ack_failed", subject=self.spec.pattern, error=type(exc).__name__)
            finally:
                queue.task_done()
