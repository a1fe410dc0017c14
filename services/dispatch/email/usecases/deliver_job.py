"""Deliver one email job: one job, at most one email, one result.

A job's life, in order:
1. suppressed address or withdrawn message: reported failed, no email
   (both decided on the clear part: the job is opened only to be sent);
   a job that does not open with the email key (another channel's,
   tampered, lifted from another job): reported failed ``unreadable``;
2. already in the sent ledger (a redelivery after a crash): reported
   delivered again (same ``Nats-Msg-Id``, so stored once), no email;
3. the volunteer's rate: over it, the job is nacked with the delay its
   turn is due in (no attempt spent); then this replica's own rate and the
   pause the server asked for;
4. SMTP: 250 → ledger, result, ack; 5xx → failed; 4xx or a lost
   connection → nacked with exponential backoff, until ``max_deliver``
   attempts, then a dead letter and a failed result.

The ack itself is the consumer's (``shared/messaging/settle.py``): it
follows the return of ``DeliverJob.__call__``, so it comes after the
result is published. The ledger is the unit of work: the SMTP pool writes
it when the relay accepts (``accepted``), before the result leaves.
"""

from __future__ import annotations

import asyncio
import time

import aiosmtplib
import structlog
from prometheus_client import Counter

from services.dispatch.email.dkim_signing import DkimSigner
from services.dispatch.email.domain.message import Outcome, UnsafeHeader, classify_smtp_code, compose_bytes, slows_down
from services.dispatch.email.ledger import Ledger
from services.dispatch.email.limits import SendLimits
from services.dispatch.email.outbound import Outbound
from services.dispatch.email.own_smtp import OwnAccounts
from services.dispatch.email.settings import EmailDispatchSettings
from services.dispatch.email.smtp import SmtpPool
from services.dispatch.email.suppressions import SuppressionList
from services.dispatch.withdrawals import WithdrawnMessages
from shared.egress import EgressRefused
from shared.events import Channel, EmailJob, OpenedEmailJob
from shared.messaging import redelivery_delay
from shared.outcomes import OutcomeKind
from shared.sealed import SealError, TransitSealer, open_email

log = structlog.get_logger(__name__)

EMAILS = Counter(
    "maillage_dispatch_emails_total",
    "Email jobs by outcome: delivered, failed (permanent or retries exhausted), retry, suppressed, "
    "withdrawn, deferred (rate limit), already_sent (redelivered after a crash), dead (dead-lettered), "
    "unreadable (does not open with the email transit key).",
    ["outcome"],
)
# labels() takes a lock and a dict lookup per call: the children, once.
OUTCOME = {name: EMAILS.labels(name) for name in (
    "delivered", "failed", "retry", "suppressed", "withdrawn", "deferred", "already_sent", "dead", "unreadable")}

# JetStream's own cap on deliveries, above our attempt budget: rate-limit
# deferrals are deliveries too. A job reaching it is dead-lettered.
DELIVERY_HEADROOM = 20
PRUNE_EVERY = 50_000  # sends between two prunes of the ledger (and once on start)


def consumer_max_deliver(settings: EmailDispatchSettings) -> int:
    return settings.max_deliver + DELIVERY_HEADROOM


class DeliverJob:
    """The use case, with what it needs between jobs; called once per job
    by the NATS adapter (``worker``) with the job and its message."""

    def __init__(self, settings: EmailDispatchSettings, *, outbound: Outbound, ledger: Ledger, limits: SendLimits,
                 relay: SmtpPool, own_accounts: OwnAccounts, signer: DkimSigner | None,
                 suppressed: SuppressionList, withdrawn: WithdrawnMessages) -> None:
        self.settings = settings
        self.outbound = outbound
        self.ledger = ledger
        self.limits = limits
        self.relay = relay
        self.own_accounts = own_accounts
        self.signer = signer
        self.suppressed = suppressed
        self.withdrawn = withdrawn
        self.sealer = TransitSealer.from_secret(Channel.email, settings.transit_key)
        self.from_address = str(settings.from_address)
        self.consumer_max_deliver = consumer_max_deliver(settings)
        # job id -> monotonic time its rate-limit turn comes: a deferred job
        # that comes back spends the token it reserved, not a second one.
        self.turns: dict[str, float] = {}
        self.sent_since_prune = 0
        # jobs being sent by this process: a redelivery that overtakes a
        # slow send (ack_wait passed) must not send the same email alongside
        self.in_flight: set[str] = set()

    async def __call__(self, job: EmailJob, msg) -> None:
        await self.suppressed.replay.caught_up.wait()
        for skip, applies in ((OutcomeKind.suppressed, job.recipient_hash in self.suppressed),
                              (OutcomeKind.withdrawn, await self.withdrawn.contains(job.message_id))):
            if applies:
                OUTCOME[skip].inc()
                await self.outbound.result(job, skip)
                return
        try:
            opened = open_email(job, self.sealer)
        except SealError:
            # terminated with a result, never retried (no key change makes it
            # open later); the log names the job, never what it may hold
            OUTCOME["unreadable"].inc()
            log.warning("email.job_unreadable", job_id=job.job_id)
            await self.outbound.result(job, OutcomeKind.unreadable)
            return
        if job.job_id in self.in_flight:
            await msg.nak(delay=self.settings.ack_wait)
            return
        self.in_flight.add(job.job_id)
        try:
            await self._deliver(opened, msg)
        finally:
            self.in_flight.discard(job.job_id)

    async def _deliver(self, job: OpenedEmailJob, msg) -> None:
        if await self.ledger.was_sent(job.job_id):
            OUTCOME["already_sent"].inc()
            await self.outbound.result(job, OutcomeKind.delivered)
            return
        if await self._wait_for_turn(job, msg):
            return
        await self.limits.global_turn()
        outcome, code, reason, kind = await self._send(job)
        if outcome is Outcome.delivered:
            self.limits.throttle.succeeded()
            OUTCOME["delivered"].inc()
            self.sent_since_prune += 1
            if self.sent_since_prune >= PRUNE_EVERY:  # a long-lived replica's ledger stays bounded
                self.sent_since_prune = 0
                await self.ledger.prune(self.settings.ledger_retention_days)
            await self.outbound.result(job, OutcomeKind.delivered)
            return
        if outcome is Outcome.failed:
            OUTCOME["failed"].inc()
            await self.outbound.result(job, kind, reason)
            return
        await self._retry_or_bury(job, msg, code, reason)

    async def _wait_for_turn(self, job: OpenedEmailJob, msg) -> bool:
        """True if the job was deferred (nacked until its turn)."""
        due = self.turns.pop(job.job_id, None)
        if due is not None:  # it comes back for the turn it reserved
            wait = due - time.monotonic()
        else:
            wait = await self.limits.volunteer_turn(job.volunteer_id)
        if wait <= 0:
            return False
        if wait < 1.0:  # shorter than a trip through JetStream
            await asyncio.sleep(wait)
            return False
        if len(self.turns) > 100_000:  # jobs that another replica took since: forget them
            self.turns.clear()
        self.turns[job.job_id] = time.monotonic() + wait
        OUTCOME["deferred"].inc()
        await msg.nak(delay=wait)
        return True

    def _render(self, job: OpenedEmailJob, from_address: str | None = None) -> bytes:
        """From the campaign's address, DKIM-signed with its key; or, through
        the volunteer's own account, from their address, unsigned here."""
        if from_address is not None:
            return compose_bytes(job, from_address, self.settings.list_id)
        data = compose_bytes(job, self.from_address, self.settings.list_id)
        return self.signer.sign(data) if self.signer else data

    async def _route(self, job: OpenedEmailJob) -> tuple[SmtpPool, str, bytes]:
        """The pool, envelope sender and bytes of this job's email."""
        if job.smtp_account is None:
            return self.relay, self.from_address, self._render(job)
        sender = str(job.smtp_account.from_address)
        return await self.own_accounts.pool(job.smtp_account), sender, self._render(job, sender)

    async def _send(self, job: OpenedEmailJob) -> tuple[Outcome, int | None, str | None, OutcomeKind]:
        """What the attempt did, its SMTP code, the detail for people, and
        the kind a failure reports (``delivered`` otherwise)."""
        try:
            pool, sender, data = await self._route(job)
        except UnsafeHeader as exc:  # a value no header can hold: no retry makes it one (the header named, not the value)
            log.warning("email.unsafe_header", job_id=job.job_id, header=exc.header)
            return Outcome.failed, None, None, OutcomeKind.unsafe_header
        try:
            await pool.send(
                sender, str(job.recipient_email), data,
                accepted=lambda: self.ledger.record_sent(job.job_id, job.volunteer_id, job.recipient_hash))
            return Outcome.delivered, 250, None, OutcomeKind.delivered
        except aiosmtplib.SMTPRecipientsRefused as exc:  # not an SMTPResponseException
            code = exc.recipients[0].code if exc.recipients else 550
        except aiosmtplib.SMTPResponseException as exc:
            code = exc.code
        except EgressRefused:  # the volunteer's server is not a public address: no retry makes it one
            return Outcome.failed, None, None, OutcomeKind.egress_refused
        except (aiosmtplib.SMTPException, OSError) as exc:
            return Outcome.retry, None, type(exc).__name__, OutcomeKind.failed_after_retries
        return classify_smtp_code(code), code, f"smtp {code}", OutcomeKind.refused

    async def _retry_or_bury(self, job: OpenedEmailJob, msg, code: int | None, reason: str | None) -> None:
        if job.smtp_account is None and (code is None or slows_down(code)):  # the relay's pace, not a volunteer's server
            self.limits.throttle.slow_down()
        failures = await self.ledger.add_failure(job.job_id)
        delivered = msg.metadata.num_delivered or 1
        if failures < self.settings.max_deliver and delivered < self.consumer_max_deliver:
            OUTCOME["retry"].inc()
            log.info("email.retry", job_id=job.job_id, reason=reason, attempt=failures)
            await msg.nak(delay=redelivery_delay(failures))
            return
        OUTCOME["dead"].inc()
        log.warning("email.dead_letter", job_id=job.job_id, reason=reason, attempts=failures)
        await self.outbound.dead_letter(job, reason or "retries exhausted", failures)
        await self.outbound.result(job, OutcomeKind.failed_after_retries, f"retries exhausted ({reason})")
