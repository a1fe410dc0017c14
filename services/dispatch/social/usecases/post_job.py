"""Post one social job: at most one post, one result.

Every network runs the same steps; only the adapter (``Poster``) differs:
- a job of a withdrawn message is dropped, reported ``withdrawn``;
- the credentials are opened (sealed by contacts for this job only, with
  this network's own key: a job that does not open fails as
  ``credentials_unreadable``);
- an account whose rate-limit window is nearly spent, or that got a 429,
  waits: the job is nacked with a delay until the window resets, instead
  of being tried (JetStream redelivers it then);
- a transient failure (429, 5xx, network) is nacked with that delay or
  with exponential backoff, until ``max_deliver``; then it fails;
- a revoked token is a permanent failure with reason ``token_revoked``:
  contacts shows it to the volunteer, who reconnects the account.
Nothing here logs or reports the credentials, nor the post's URL."""

from __future__ import annotations

import time
from typing import Protocol

import httpx
import structlog
from prometheus_client import Counter

from services.dispatch.social.domain import Outcome, Throttle, Verdict, Window
from services.dispatch.social.outbound import Outbound
from services.dispatch.social.settings import SocialDispatchSettings
from services.dispatch.withdrawals import WithdrawnMessages
from shared.events import Channel, SocialPostJob
from shared.messaging import redelivery_delay
from shared.outcomes import OutcomeKind
from shared.sealed import SealError, TransitSealer, open_credentials

log = structlog.get_logger(__name__)

POSTS = Counter(
    "maillage_dispatch_social_posts_total",
    "Social jobs by network and outcome: posted, retry, paused (rate limit), failed, revoked.",
    ["network", "outcome"],
)


class Poster(Protocol):
    """A network's adapter (``mastodon``, ``bluesky``, ``x``)."""

    channel: Channel

    async def post(self, job: SocialPostJob, creds: dict, *, retried: bool = False) -> tuple[Outcome, Window | None]:
        ...


class PostJob:
    """The use case, with what it keeps between jobs (the accounts' rate
    windows); called once per job by the NATS adapter (``worker``)."""

    def __init__(self, settings: SocialDispatchSettings, poster: Poster, outbound: Outbound,
                 withdrawn: WithdrawnMessages) -> None:
        self.poster, self.outbound, self.withdrawn = poster, outbound, withdrawn
        self.network = poster.channel
        self.max_deliver = settings.max_deliver
        # its own network's key only: another channel's jobs do not open here
        self.sealer = TransitSealer.from_secret(self.network, settings.transit_key)
        self.throttle = Throttle(settings.rate_reserve)

    async def __call__(self, job: SocialPostJob, msg) -> None:
        attempt = msg.raw_message.metadata.num_delivered or 1
        account = job.volunteer_id
        if await self.withdrawn.contains(job.message_id):
            return await self._finish(job, Outcome(Verdict.failed, "withdrawn", failure=OutcomeKind.withdrawn))
        try:
            creds = open_credentials(job, self.sealer)
        except SealError:  # terminated with a result, never retried: no key change makes it open later
            return await self._finish(job, Outcome(Verdict.failed, "credentials_unreadable", failure=OutcomeKind.unreadable))
        wait = self.throttle.wait(account, time.time())
        if wait > 0:
            POSTS.labels(self.network.value, "paused").inc()
            await msg.nack(delay=wait)
            return
        try:
            outcome, window = await self.poster.post(job, creds, retried=attempt > 1)
        except KeyError:
            outcome, window = Outcome(Verdict.failed, "credentials_incomplete",
                                     failure=OutcomeKind.credentials_incomplete), None
        except (httpx.HTTPError, ValueError) as exc:  # network trouble, or an answer that is not JSON
            outcome, window = Outcome(Verdict.retry, type(exc).__name__), None
        self.throttle.observe(account, window)
        if outcome.verdict is Verdict.retry:
            if outcome.retry_after:
                self.throttle.hold(account, time.time() + outcome.retry_after)
            if attempt < self.max_deliver:
                delay = outcome.retry_after or redelivery_delay(attempt)
                POSTS.labels(self.network.value, "retry").inc()
                log.info("social.retry", network=self.network.value, job_id=job.job_id,
                         reason=outcome.reason, delay=round(delay, 1))
                await msg.nack(delay=delay)
                return
        await self._finish(job, outcome)

    async def _finish(self, job: SocialPostJob, outcome: Outcome) -> None:
        posted = outcome.verdict is Verdict.posted
        POSTS.labels(self.network.value, outcome.verdict.value).inc()
        if not posted:
            log.info("social.failed", network=self.network.value, job_id=job.job_id, reason=outcome.reason)
        await self.outbound.result(job, outcome)
