"""What becomes of one delivered message, for both consumer paths.

FastStream's subscribers (``Bus.subscriber``) and the lean pull consumer
(``PullConsumer``) settle a message by the same rules, here once:

- the payload is upcast to the model's current ``schema_version`` and
  validated; an invalid one is counted, logged with its reason (never its
  value: it may be PII) and terminated, so it never blocks the stream;
- the handler runs; if it raises, the message is nacked with exponential
  backoff (bounded by the consumer's ``max_deliver``), unless the handler
  settled it itself (a deferral, a term);
- otherwise it is acked, unless the handler already did.

Both paths hand over nats-py's ``Msg`` (FastStream's ``NatsMessage`` wraps
one as ``raw_message``): that is the interface settling needs.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from prometheus_client.metrics import Counter, Histogram
from pydantic import BaseModel, ValidationError

from shared.catalogue import SubjectSpec
from shared.events import read_event
from shared.observability.metrics import HANDLER_SECONDS, MESSAGES_FAILED, MESSAGES_HANDLED

log = structlog.get_logger(__name__)

Handler = Callable[[Any, Any], Awaitable[None]]


class Delivery(Protocol):
    """The part of nats-py's ``Msg`` that settling uses."""

    data: bytes
    # nats-py's only record that a message was already acked, nacked or
    # terminated (by the handler): it has no public accessor.
    _ackd: bool

    @property
    def metadata(self) -> Any: ...

    async def ack(self) -> None: ...

    async def nak(self, delay: float | int | None = None) -> None: ...

    async def term(self) -> None: ...


def _safe_loc(part: str | int) -> str:
    # Dict keys and unknown field names land in the location: an address
    # used as a key must not reach the logs.
    if isinstance(part, int) or part == "[key]" or str(part).isidentifier():
        return str(part)
    return "<key>"


def validation_reason(exc: ValidationError) -> str:
    """Which field and why, without the offending value (it may be PII)."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        where = ".".join(_safe_loc(p) for p in err["loc"]) or "payload"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)[:500]


def redelivery_delay(num_delivered: int, base: float = 1.0, cap: float = 300.0) -> float:
    """Exponential backoff for a nacked message: 1s, 2s, 4s … capped."""
    return min(cap, base * 2 ** max(0, num_delivered - 1))


@dataclass(frozen=True, slots=True)
class Meters:
    """One subscription's metrics, resolved once: ``labels()`` is a dict
    lookup under a lock, too dear per message on a hot subject."""

    handled: Counter
    invalid: Counter
    failed: Counter
    seconds: Histogram

    @classmethod
    def of(cls, service: str, spec: SubjectSpec) -> "Meters":
        return cls(
            handled=MESSAGES_HANDLED.labels(service, spec.pattern),
            invalid=MESSAGES_FAILED.labels(service, spec.pattern, "invalid_payload"),
            failed=MESSAGES_FAILED.labels(service, spec.pattern, "handler_error"),
            seconds=HANDLER_SECONDS.labels(service, spec.pattern),
        )


async def settle(spec: SubjectSpec, handler: Handler, message: Any, raw: Delivery, meters: Meters,
                 *, acks: bool = True) -> None:
    """Validate ``raw``'s payload, run ``handler(event, message)`` and ack,
    nack or terminate ``raw``. ``message`` is what the handler was written
    for (FastStream's ``NatsMessage``, or ``raw`` itself); without ``acks``
    (an ordered replay) nothing is settled."""
    try:
        event: BaseModel = read_event(spec.model, raw.data)
    except ValidationError as exc:
        meters.invalid.inc()
        log.warning("event.rejected", subject=spec.pattern, reason=validation_reason(exc))
        if acks:
            await raw.term()
        return
    started = time.perf_counter()
    try:
        await handler(event, message)
    except Exception as exc:
        meters.failed.inc()
        # The exception text may quote a payload (an address): log its type only.
        log.error("event.handler_failed", subject=spec.pattern, error=type(exc).__name__)
        if acks and not raw._ackd:
            await raw.nak(delay=redelivery_delay(raw.metadata.num_delivered or 1))
        return
    finally:
        meters.seconds.observe(time.perf_counter() - started)
    meters.handled.inc()
    if acks and not raw._ackd:
        await raw.ack()
