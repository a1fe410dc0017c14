"""The email dispatcher's NATS handler: one job, one email, one result."""

from __future__ import annotations

import aiosmtplib
import structlog
from prometheus_client import Counter

from services.dispatch.email_domain import Outcome, classify_smtp_code, compose
from services.dispatch.settings import EmailDispatchSettings
from services.dispatch.smtp import SmtpSender
from shared.bus import Bus, Replay
from shared.catalogue import EMAIL_JOB, EMAIL_RESULT, MESSAGE_WITHDRAWN, SUPPRESSION_ADDED
from shared.events import Channel, DeliveryStatus, DispatchResult, EmailJob, Suppressed

log = structlog.get_logger(__name__)

EMAILS = Counter(
    "maillage_dispatch_emails_total",
    "Email jobs by outcome: delivered, failed (permanent or retries exhausted), retry, suppressed, withdrawn.",
    ["outcome"],
)


class RetryLater(Exception):
    """A transient failure: the message is nacked and redelivered with backoff."""


class SuppressionList:
    """Keyed hashes of addresses never to write to, replayed from JetStream
    on start and kept current: checked for every job, at send time."""

    def __init__(self, bus: Bus) -> None:
        self.hashes: set[str] = set()
        self.replay = Replay(bus, SUPPRESSION_ADDED, self.add,
                             describe=lambda: f"{len(self.hashes)} suppressed addresses")

    def add(self, event: Suppressed) -> None:
        self.hashes.add(event.address_hash)

    def __contains__(self, address_hash: str) -> bool:
        return address_hash in self.hashes


class WithdrawnMessages:
    """Messages staff withdrew: their pending jobs are dropped, not sent."""

    def __init__(self, bus: Bus) -> None:
        self.ids: set[str] = set()
        self.replay = Replay(bus, MESSAGE_WITHDRAWN, lambda e: self.ids.add(e.message_id),
                             describe=lambda: f"{len(self.ids)} withdrawn messages")


def register(bus: Bus, sender: SmtpSender, settings: EmailDispatchSettings,
             suppressed: SuppressionList, withdrawn: WithdrawnMessages) -> None:
    async def report(job: EmailJob, status: DeliveryStatus, reason: str | None = None) -> None:
        result = DispatchResult(
            job_id=job.job_id, relay_id=job.relay_id, message_id=job.message_id,
            volunteer_id=job.volunteer_id, channel=Channel.email, status=status, reason=reason,
        )
        await bus.publish(EMAIL_RESULT, result, msg_id=f"{job.job_id}:result")

    @bus.subscriber(
        EMAIL_JOB, durable="dispatch-email", max_deliver=settings.max_deliver, batch_size=32
    )
    async def send_email(job: EmailJob, msg) -> None:
        await suppressed.replay.caught_up.wait()
        await withdrawn.replay.caught_up.wait()
        for skip, applies in (("suppressed", job.recipient_hash in suppressed),
                              ("withdrawn", job.message_id in withdrawn.ids)):
            if applies:
                EMAILS.labels(skip).inc()
                await report(job, DeliveryStatus.failed, skip)
                return
        try:
            await sender.send(compose(job, str(settings.from_address), settings.list_id))
            outcome, reason = Outcome.delivered, None
        except aiosmtplib.SMTPRecipientsRefused as exc:  # not an SMTPResponseException
            code = exc.recipients[0].code if exc.recipients else 550
            outcome, reason = classify_smtp_code(code), f"smtp {code}"
        except aiosmtplib.SMTPResponseException as exc:
            outcome, reason = classify_smtp_code(exc.code), f"smtp {exc.code}"
        except (aiosmtplib.SMTPException, OSError) as exc:
            outcome, reason = Outcome.retry, type(exc).__name__

        last_try = (msg.raw_message.metadata.num_delivered or 1) >= settings.max_deliver
        if outcome is Outcome.retry and not last_try:
            EMAILS.labels("retry").inc()
            log.info("email.retry", job_id=job.job_id, reason=reason)
            raise RetryLater(reason)
        status = DeliveryStatus.delivered if outcome is Outcome.delivered else DeliveryStatus.failed
        EMAILS.labels(status.value).inc()
        await report(job, status, reason)


class EmailDispatcher:
    """The email dispatcher's parts, wired as the service runs them."""

    def __init__(self, bus: Bus, settings: EmailDispatchSettings) -> None:
        self.sender = SmtpSender(settings)
        self.suppressed = SuppressionList(bus)
        self.withdrawn = WithdrawnMessages(bus)
        register(bus, self.sender, settings, self.suppressed, self.withdrawn)

    async def prepare(self) -> None:
        await self.suppressed.replay.prepare()
        await self.withdrawn.replay.prepare()

    def checks(self) -> dict:
        return {"smtp": self.sender.ready, "suppressions": self.suppressed.replay.ready,
                "withdrawals": self.withdrawn.replay.ready}
