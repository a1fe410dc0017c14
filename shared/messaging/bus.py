"""The only door between a service and NATS.

``Bus`` wraps FastStream's ``NatsBroker`` so that
- a service never declares a stream: ``python -m tools.streams apply``
  does, under its own NATS user, before the services start; a service only
  checks that its streams exist (its NATS user may not create, update,
  purge or delete one), and is not ready until they do;
- a service publishes and subscribes only to subjects the catalogue
  declares, and only in the role (producer/consumer) declared for it;
- every payload is validated against its model on the way out (by
  construction) and on the way in, where each message is settled by
  ``settle`` (shared/messaging/settle.py): ack on success, term on an
  invalid payload, nack with backoff on a handler error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

import structlog
from faststream import AckPolicy
from faststream.security import SASLPlaintext
from faststream.nats import ConsumerConfig, DeliverPolicy, JStream, NatsBroker, PullSub
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import BaseModel

from shared.catalogue import StreamSpec, SubjectSpec, streams_of
from shared.messaging.pull_consumer import PullConsumer, RawHandler
from shared.messaging.settle import Handler, Meters, settle
from shared.observability.metrics import MESSAGES_PUBLISHED

log = structlog.get_logger(__name__)

APPLY_STREAMS = "python -m tools.streams apply"


class UndeclaredSubject(RuntimeError):
    """A service tried to use a subject outside its declared role."""


class MissingStreams(RuntimeError):
    """Streams a service needs do not exist: the streams step has not run."""

    def __init__(self, service: str, names: list[str]) -> None:
        self.names = names
        super().__init__(f"{service} needs the streams {', '.join(names)}, which do not exist: "
                         f"run `{APPLY_STREAMS}` (the Job `streams` in Kubernetes)")


def inbox_prefix(service: str) -> str:
    """Where a service's request replies arrive; its NATS permissions
    allow subscribing there only."""
    return f"_INBOX_{service}"


def check_role(service: str, spec: SubjectSpec, *, consumer: bool) -> None:
    """Raise ``UndeclaredSubject`` unless the catalogue gives ``service``
    this role on ``spec``."""
    allowed = service in spec.consumers if consumer else service == spec.producer
    if not allowed:
        role = "consume" if consumer else "produce"
        raise UndeclaredSubject(f"{service} may not {role} {spec.pattern}: see shared/catalogue.py")


def check_model(spec: SubjectSpec, event: BaseModel) -> None:
    if not isinstance(event, spec.model):
        raise TypeError(f"{spec.pattern} carries {spec.model.__name__}, not {type(event).__name__}")


class Bus:
    def __init__(self, service: str, nats_url: str, *, publish_timeout: float = 5.0,
                 user: str | None = None, password: str | None = None, stream_wait: float = 60.0) -> None:
        self.service = service
        # How long a start waits for the streams step (in Kubernetes the Job
        # runs beside the first pods) before failing with what is missing.
        self.stream_wait = stream_wait
        # FastStream's default PubAck wait is 0.5 s: a busy JetStream (a
        # hundred thousand suggestions in flight) would fail publishes that
        # are merely queued.
        self.publish_timeout = publish_timeout
        self.broker = NatsBroker(
            nats_url,
            name=f"maillage-{service}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=1,
            # FastStream logs through the root logger, hence our structured
            # format; its per-message lines are debug-level noise.
            logger=logging.getLogger("maillage.broker"),
            log_level=logging.DEBUG,
            security=SASLPlaintext(username=user or service, password=password) if password else None,
            # Replies (PubAcks, pulled messages) come to this service's own
            # inbox prefix: its NATS user may subscribe to nothing else, so
            # no service can read another's replies.
            inbox_prefix=inbox_prefix(service),
        )
        self.inbox = f"{inbox_prefix(service)}.".encode()  # where pulled messages arrive
        self.subjects_published: set[str] = set()
        self.subjects_consumed: set[str] = set()
        self._js: JetStreamContext | None = None  # the pipelined publishes' JetStream context, made on first use
        self.pull_consumers: list[PullConsumer] = []  # started and stopped with the broker

    @classmethod
    def for_service(cls, settings) -> "Bus":
        """The bus of a service, from its ``ServiceSettings``."""
        common = settings.common
        password = common.nats_password.get_secret_value() if common.nats_password else None
        return cls(type(settings).service, common.nats_url, user=common.nats_user, password=password)

    # -- declaration ---------------------------------------------------------

    def _check_role(self, spec: SubjectSpec, *, consumer: bool) -> None:
        check_role(self.service, spec, consumer=consumer)

    def subscriber(
        self,
        spec: SubjectSpec,
        *,
        durable: str | None = None,
        replay: DeliverPolicy | None = None,
        max_deliver: int = 10,
        ack_wait: float = 30.0,
        batch_size: int = 16,
        max_workers: int = 1,
    ) -> Callable[[Handler], Handler]:
        """Subscribe a handler ``(event, message) -> None`` to ``spec``.

        With ``durable`` the consumer is a durable pull consumer shared by
        every replica of the service (explicit acks); without it, an ordered
        ephemeral consumer that replays the stream from ``replay`` (e.g.
        LAST_PER_SUBJECT to rebuild state on start) and needs no acks.

        ``max_workers`` > 1 (durable only): that many handlers run at once,
        fed continuously; otherwise each fetched batch runs concurrently and
        the next fetch waits for the slowest message of the last.
        """
        self._check_role(spec, consumer=True)
        self.subjects_consumed.add(spec.pattern)
        stream = JStream(spec.stream.name, declare=False)
        acks = durable is not None
        meters = Meters.of(self.service, spec)

        def decorator(handler: Handler) -> Handler:
            # No parameter for FastStream to inject: a ``NatsMessage``
            # parameter is resolved through the dependency machinery, which
            # costs about four times the throughput of reading the message
            # from the broker's context (measured on a replay).
            async def on_message() -> None:
                msg = self.broker.context.get_local("message")
                await settle(spec, handler, msg, msg.raw_message, meters, acks=acks)

            on_message.__name__ = handler.__name__
            on_message.__doc__ = handler.__doc__
            if acks:
                self.broker.subscriber(
                    spec.pattern,
                    stream=stream,
                    durable=durable,
                    pull_sub=PullSub(batch_size=batch_size, timeout=5.0),
                    config=ConsumerConfig(max_deliver=max_deliver, ack_wait=ack_wait),
                    ack_policy=AckPolicy.MANUAL,
                    max_workers=max_workers,
                    inbox_prefix=self.inbox,
                    title=f"{self.service}:{spec.pattern}",
                    description=spec.description,
                )(on_message)
            else:
                self.broker.subscriber(
                    spec.pattern,
                    stream=stream,
                    ordered_consumer=True,
                    deliver_policy=replay or DeliverPolicy.NEW,
                    ack_policy=AckPolicy.MANUAL,
                    inbox_prefix=self.inbox,
                    title=f"{self.service}:{spec.pattern}",
                    description=spec.description,
                )(on_message)
            return handler

        return decorator

    def pull_consumer(
        self,
        spec: SubjectSpec,
        handler: RawHandler,
        *,
        durable: str,
        max_deliver: int = 10,
        ack_wait: float = 30.0,
        batch: int = 16,
        concurrency: int = 1,
    ) -> PullConsumer:
        """Like a durable ``subscriber``, without FastStream on the message
        path: for a hot subject where its per-message cost shows (see
        shared/messaging/pull_consumer.py). The handler gets ``(event, nats Msg)``."""
        self._check_role(spec, consumer=True)
        self.subjects_consumed.add(spec.pattern)
        consumer = PullConsumer(self.service, spec, durable, handler, inbox=self.inbox, max_deliver=max_deliver,
                                ack_wait=ack_wait, batch=batch, concurrency=concurrency)
        self.pull_consumers.append(consumer)
        return consumer

    # -- publishing ------------------------------------------------------------

    async def publish(self, spec: SubjectSpec, event: BaseModel, *tokens: str, msg_id: str) -> None:
        """Publish to JetStream and wait for its ack. ``msg_id`` is the
        ``Nats-Msg-Id`` dedupe key: the same id within the stream's window is
        stored once, so a retried publish is harmless."""
        self._check_role(spec, consumer=False)
        check_model(spec, event)
        subject = spec.subject(*tokens)
        await self.broker.publish(
            event.model_dump_json().encode(),
            subject,
            headers={"Nats-Msg-Id": msg_id, "content-type": "application/json"},
            stream=spec.stream.name,
            timeout=self.publish_timeout,
        )
        self.subjects_published.add(spec.pattern)
        MESSAGES_PUBLISHED.labels(self.service, spec.pattern).inc()

    async def _send_async(self, spec: SubjectSpec, event: BaseModel, tokens: tuple[str, ...],
                          msg_id: str) -> asyncio.Future:
        """Send on nats-py without waiting; the future resolves to the
        PubAck. The caller checked the role."""
        check_model(spec, event)
        if self._js is None:  # one context: each makes its own reply subscription
            self._js = self.broker.connection.jetstream()
        return await self._js.publish_async(
            spec.subject(*tokens), event.model_dump_json().encode(), stream=spec.stream.name,
            headers={"Nats-Msg-Id": msg_id, "content-type": "application/json"})

    async def publish_fast(self, spec: SubjectSpec, event: BaseModel, *tokens: str, msg_id: str) -> None:
        """``publish``'s contract (role, model, ``Nats-Msg-Id``, PubAck awaited
        within ``publish_timeout``) on nats-py directly: FastStream's publish
        path (middlewares, a request inbox per call) was ~7 % of the email
        dispatcher's CPU, publishing one result per email."""
        self._check_role(spec, consumer=False)
        ack = await self._send_async(spec, event, tokens, msg_id)
        async with asyncio.timeout(self.publish_timeout):
            await ack
        self.subjects_published.add(spec.pattern)
        MESSAGES_PUBLISHED.labels(self.service, spec.pattern).inc()

    async def publish_many(
        self,
        spec: SubjectSpec,
        items: Iterable[tuple[BaseModel, tuple[str, ...], str]],
    ) -> int:
        """Publish ``(event, tokens, msg_id)`` items pipelined: nats-py's
        ``publish_async`` sends without waiting (bounded by its pending
        window), then every PubAck is awaited; an awaited ack per message
        would cap throughput at the round-trip. Raises on the first refusal
        or timeout; each item keeps its ``Nats-Msg-Id``, so a retry of the
        whole batch stores nothing twice."""
        self._check_role(spec, consumer=False)
        acks = [await self._send_async(spec, event, tokens, msg_id) for event, tokens, msg_id in items]
        try:
            # the batch gets the one-message timeout plus its share of time at a modest 5k/s
            await asyncio.wait_for(asyncio.gather(*acks), timeout=self.publish_timeout + len(acks) / 5000)
        finally:
            for ack in acks:  # on a failure, nobody awaits the others: consume their errors
                if not ack.done():
                    ack.cancel()
                elif not ack.cancelled():
                    ack.exception()
        if acks:
            self.subjects_published.add(spec.pattern)
            MESSAGES_PUBLISHED.labels(self.service, spec.pattern).inc(len(acks))
        return len(acks)

    # -- lifecycle -----------------------------------------------------------------

    async def missing_streams(self) -> list[str]:
        """The streams this service touches that do not exist. Only looked
        at (STREAM.INFO): its NATS user may not create or change one."""
        js = self.broker.connection.jetstream()
        missing = []
        for stream in streams_of(self.service):
            try:
                await js.stream_info(stream.name)
            except NotFoundError:
                missing.append(stream.name)
        return missing

    async def wait_for_streams(self) -> None:
        """Wait up to ``stream_wait`` for the streams step, then fail naming
        what is missing: subscribing to, or replaying, a stream that is not
        there would fail later with a vaguer error."""
        deadline = time.monotonic() + self.stream_wait
        missing = await self.missing_streams()
        if missing:
            log.warning("stream.missing", streams=missing, hint=APPLY_STREAMS)
        while missing:
            if time.monotonic() > deadline:
                raise MissingStreams(self.service, missing)
            await asyncio.sleep(0.5)
            missing = await self.missing_streams()

    async def connect(self) -> None:
        """Connect, and wait until this service's streams exist."""
        if self.broker._connection is None:
            await self.broker.connect()
            await self.wait_for_streams()

    async def start(self) -> None:
        await self.connect()
        await self.broker.start()
        for consumer in self.pull_consumers:
            await consumer.start(self.broker.connection)

    async def stored_messages(self, what: StreamSpec | SubjectSpec) -> int:
        """How many messages a stream holds, or holds on one subject (a
        stream may carry several: FEED has published and withdrawn)."""
        js = self.broker.connection.jetstream()
        if isinstance(what, StreamSpec):
            return (await js.stream_info(what.name)).state.messages
        info = await js.stream_info(what.stream.name, subjects_filter=what.pattern)
        return sum((info.state.subjects or {}).values())

    async def stop(self) -> None:
        for consumer in self.pull_consumers:  # drained while the connection can still ack
            await consumer.stop()
        await self.broker.stop()
        self._js = None  # bound to the connection just closed

    async def ready(self) -> tuple[bool, str]:
        conn = self.broker._connection
        if conn is None or not conn.is_connected:
            return False, "not connected to NATS"
        missing = await self.missing_streams()
        if missing:
            return False, f"missing streams: {', '.join(missing)} (run `{APPLY_STREAMS}`)"
        return True, "connected"
