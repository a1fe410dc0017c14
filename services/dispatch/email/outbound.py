"""Everything the email dispatcher publishes leaves through here: a job's
result (``dispatch.email.results``), its dead letter
(``dispatch.email.dead``) and a hard bounce (``dispatch.email.bounces``).
Each carries a ``Nats-Msg-Id`` made from the job, so a redelivered job or
a DSN posted twice is stored once."""

from __future__ import annotations

from shared.catalogue import EMAIL_BOUNCE, EMAIL_DEAD, EMAIL_RESULT
from shared.events import BounceReported, Channel, DeadLetter, DeliveryStatus, DispatchResult, EmailJob, OpenedEmailJob
from shared.messaging import Bus
from shared.outcomes import OutcomeKind


class Outbound:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    async def result(self, job: EmailJob | OpenedEmailJob, outcome: OutcomeKind, reason: str | None = None) -> None:
        """``reason`` is the detail for people; ``outcome`` what readers count."""
        delivered = outcome is OutcomeKind.delivered
        result = DispatchResult(
            job_id=job.job_id, relay_id=job.relay_id, message_id=job.message_id, volunteer_id=job.volunteer_id,
            channel=Channel.email, status=DeliveryStatus.delivered if delivered else DeliveryStatus.failed,
            reason=None if delivered else reason or outcome.value, outcome=outcome,
        )
        # one result per email: the lean publish (shared/messaging/bus.py)
        await self.bus.publish_fast(EMAIL_RESULT, result, msg_id=f"{job.job_id}:result")

    async def dead_letter(self, job: OpenedEmailJob, reason: str, attempts: int) -> None:
        dead = DeadLetter(job_id=job.job_id, relay_id=job.relay_id, message_id=job.message_id,
                          volunteer_id=job.volunteer_id, channel=Channel.email, reason=reason, attempts=attempts)
        await self.bus.publish(EMAIL_DEAD, dead, msg_id=f"{job.job_id}:dead")

    async def bounce(self, job_id: str, address_hash: str, status: str) -> None:
        event = BounceReported(job_id=job_id, address_hash=address_hash, status=status)
        await self.bus.publish(EMAIL_BOUNCE, event, msg_id=f"{job_id}:bounce")
