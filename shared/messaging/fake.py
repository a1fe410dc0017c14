"""A bus without NATS, for use-case and handler tests.

``FakeBus`` has the ``Bus``'s publish/subscribe surface and keeps its
rules: the catalogue's roles (``UndeclaredSubject``), the model a subject
carries (``TypeError``), the subject tokens, JetStream's dedupe on
``Nats-Msg-Id``. It records what is published (``published``) and
``deliver`` hands a message to every handler subscribed to a subject
through the same ``settle`` as the real consumers, so a test sees what
would be acked, nacked (with which delay) or terminated. What it cannot
show (redelivery timing, consumer limits, acks crossing a connection)
stays with the tests against a real nats-server.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

from pydantic import BaseModel

from shared.catalogue import StreamSpec, SubjectSpec
from shared.messaging.bus import check_model, check_role
from shared.messaging.settle import Handler, Meters, settle


@dataclass
class FakeRawMessage:
    """What nats-py's ``Msg`` offers a handler and ``settle``; ``settled``
    says how it ended: "ack", "nak", "term", or None (an ordered replay)."""

    subject: str
    data: bytes
    metadata: Any
    headers: dict[str, str] = field(default_factory=dict)
    settled: str | None = None
    delay: float | None = None
    _ackd: bool = False

    async def ack(self) -> None:
        self._settle("ack")

    async def nak(self, delay: float | int | None = None) -> None:
        self._settle("nak")
        self.delay = delay

    async def term(self) -> None:
        self._settle("term")

    async def in_progress(self) -> None:
        pass

    def _settle(self, how: str) -> None:
        if self._ackd:  # nats-py refuses a second settlement likewise
            raise RuntimeError(f"message already settled ({self.settled})")
        self.settled, self._ackd = how, True


class FakeNatsMessage:
    """FastStream's ``NatsMessage`` over a ``FakeRawMessage``: what a
    ``Bus.subscriber`` handler receives."""

    def __init__(self, raw: FakeRawMessage) -> None:
        self.raw_message = raw
        self.body = raw.data
        self.headers = raw.headers

    async def ack(self) -> None:
        if not self.raw_message._ackd:
            await self.raw_message.ack()

    async def nack(self, delay: float | None = None) -> None:
        if not self.raw_message._ackd:
            await self.raw_message.nak(delay=delay)

    async def reject(self) -> None:
        if not self.raw_message._ackd:
            await self.raw_message.term()


@dataclass(frozen=True)
class Published:
    spec: SubjectSpec
    subject: str
    event: BaseModel
    msg_id: str


@dataclass
class _Subscription:
    spec: SubjectSpec
    handler: Handler
    acks: bool
    raw: bool  # a pull consumer's handler: it gets nats-py's Msg, not FastStream's
    meters: Meters


class _StubConsumer:
    """Stands for a ``PullConsumer``: started and stopped with the bus."""

    def __init__(self, spec: SubjectSpec) -> None:
        self.spec = spec

    async def start(self, _nc: Any = None) -> None:
        pass

    async def stop(self, timeout: float = 0.0) -> None:
        pass


class FakeBus:
    def __init__(self, service: str) -> None:
        self.service = service
        self.published: list[Published] = []
        self.subjects_published: set[str] = set()
        self.subjects_consumed: set[str] = set()
        self.pull_consumers: list[_StubConsumer] = []
        self.subscriptions: list[_Subscription] = []
        self._seen: set[tuple[str, str]] = set()  # (stream, msg id): JetStream's dedupe
        self._sequence = itertools.count(1)

    # -- subscribing ----------------------------------------------------------------

    def _subscribe(self, spec: SubjectSpec) -> Meters:
        check_role(self.service, spec, consumer=True)
        self.subjects_consumed.add(spec.pattern)
        return Meters.of(self.service, spec)

    def subscriber(self, spec: SubjectSpec, *, durable: str | None = None, replay: Any = None,
                   **_options: Any) -> Callable[[Handler], Handler]:
        meters = self._subscribe(spec)

        def decorator(handler: Handler) -> Handler:
            self.subscriptions.append(_Subscription(spec, handler, durable is not None, False, meters))
            return handler

        return decorator

    def pull_consumer(self, spec: SubjectSpec, handler: Handler, *, durable: str, **_options: Any) -> _StubConsumer:
        self.subscriptions.append(_Subscription(spec, handler, True, True, self._subscribe(spec)))
        consumer = _StubConsumer(spec)
        self.pull_consumers.append(consumer)
        return consumer

    # -- publishing ------------------------------------------------------------------

    async def publish(self, spec: SubjectSpec, event: BaseModel, *tokens: str, msg_id: str) -> None:
        self._record(spec, event, tokens, msg_id)

    async def publish_fast(self, spec: SubjectSpec, event: BaseModel, *tokens: str, msg_id: str) -> None:
        self._record(spec, event, tokens, msg_id)

    async def publish_many(self, spec: SubjectSpec, items: Iterable[tuple[BaseModel, tuple[str, ...], str]]) -> int:
        check_role(self.service, spec, consumer=False)
        items = list(items)
        for event, tokens, msg_id in items:
            self._record(spec, event, tokens, msg_id)
        return len(items)

    def _record(self, spec: SubjectSpec, event: BaseModel, tokens: tuple[str, ...], msg_id: str) -> None:
        check_role(self.service, spec, consumer=False)
        check_model(spec, event)
        subject = spec.subject(*tokens)
        self.subjects_published.add(spec.pattern)
        if (spec.stream.name, msg_id) in self._seen:
            return
        self._seen.add((spec.stream.name, msg_id))
        self.published.append(Published(spec, subject, event, msg_id))

    def events(self, spec: SubjectSpec) -> list[Any]:
        """What was published on ``spec``, in order (deduplicated)."""
        return [p.event for p in self.published if p.spec is spec]

    # -- delivering --------------------------------------------------------------------

    async def deliver(self, spec: SubjectSpec, payload: BaseModel | dict | bytes | str, *tokens: str,
                      num_delivered: int = 1, num_pending: int = 0) -> list[FakeRawMessage]:
        """Hand ``payload`` (an event, or a raw payload as a newer producer
        or a broken one would send it) to every handler of this service
        subscribed to ``spec``, settled as the real consumers would; the
        messages say how each ended."""
        if isinstance(payload, BaseModel):
            data = payload.model_dump_json().encode()
        elif isinstance(payload, dict):
            data = json.dumps(payload, default=str).encode()
        else:
            data = payload.encode() if isinstance(payload, str) else payload
        subject = spec.subject(*tokens) if tokens else spec.pattern
        handled = []
        for sub in self.subscriptions:
            if sub.spec is not spec:
                continue
            sequence = next(self._sequence)
            metadata = SimpleNamespace(
                sequence=SimpleNamespace(stream=sequence, consumer=sequence), num_delivered=num_delivered,
                num_pending=num_pending, timestamp=datetime.now(timezone.utc), stream=spec.stream.name)
            raw = FakeRawMessage(subject, data, metadata, headers={"content-type": "application/json"})
            message = raw if sub.raw else FakeNatsMessage(raw)
            await settle(spec, sub.handler, message, raw, sub.meters, acks=sub.acks)
            handled.append(raw)
        if not handled:
            raise LookupError(f"{self.service} has no handler for {spec.pattern}")
        return handled

    # -- lifecycle (nothing to connect to) ------------------------------------------------

    async def connect(self) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def ready(self) -> tuple[bool, str]:
        return True, "fake bus"

    async def missing_streams(self) -> list[str]:
        return []

    async def stored_messages(self, what: StreamSpec | SubjectSpec) -> int:
        """What this bus published there (it stores nothing else): a replay
        of a subject nobody published on is caught up at once."""
        if isinstance(what, StreamSpec):
            return sum(p.spec.stream is what for p in self.published)
        return sum(p.spec is what for p in self.published)

