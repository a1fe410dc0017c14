"""The email dispatcher's NATS adapter: the jobs of ``dispatch.email.jobs``,
pulled by the durable consumer ``dispatch-email`` (shared by every replica;
KEDA scales on its lag) and handed one by one to ``usecases.deliver_job``,
whose return the consumer acks (``shared/messaging/settle.py``)."""

from __future__ import annotations

from services.dispatch.email.settings import EmailDispatchSettings
from services.dispatch.email.usecases.deliver_job import DeliverJob, consumer_max_deliver
from shared.catalogue import EMAIL_JOB
from shared.messaging import Bus
from shared.messaging.pull_consumer import PullConsumer


def subscribe(bus: Bus, settings: EmailDispatchSettings, deliver: DeliverJob) -> PullConsumer:
    # FastStream's per-message path was a fifth of the CPU per email: this
    # hot subject is pulled by nats-py directly (shared/messaging/pull_consumer.py).
    return bus.pull_consumer(
        EMAIL_JOB, deliver, durable="dispatch-email", max_deliver=consumer_max_deliver(settings),
        ack_wait=settings.ack_wait,
        # Fed continuously (no wait for a batch's slowest job): twice as
        # many jobs in hand as connections, so the next one is rendered
        # and checked while the last one is on the wire. More only
        # queues callbacks ahead of the SMTP replies (measured: 2x ≥ 8x).
        batch=settings.smtp_pool_size * 4,
        concurrency=settings.smtp_pool_size * 2,
    )
