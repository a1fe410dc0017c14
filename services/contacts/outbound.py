"""What contacts tells the rest of Maillage: email and post jobs (a relay,
an invitation, a sign-in link), a relay requested, a volunteer's profile,
an address suppressed, a job's outcome revised by a bounce. The one module
that publishes: use cases call it and decide what is recorded around it.

Every message id is stable (a job id, a relay id, an address hash), so a
retried call publishes the same ids and JetStream's dedupe window drops the
copies: callers publish first and record after."""

from __future__ import annotations

from collections.abc import Sequence

from shared.catalogue import EMAIL_JOB, OUTCOME_REVISED, PROFILE_UPDATED, RELAY_REQUESTED, SOCIAL_JOBS, SUPPRESSION_ADDED
from shared.events import (
    Channel,
    DispatchResult,
    EmailJob,
    InterestProfile,
    RelayRequested,
    SocialPostJob,
    Suppressed,
)
from shared.messaging import Bus


async def email_job(bus: Bus, job: EmailJob) -> None:
    """One email outside a relay (an invitation, a sign-in link)."""
    await bus.publish(EMAIL_JOB, job, msg_id=job.job_id)


async def relay(bus: Bus, *, relay_id: str, volunteer_id: str, message_id: str, emails: Sequence[EmailJob],
                posts: Sequence[tuple[Channel, SocialPostJob]]) -> None:
    """A relay's jobs, then the relay itself (what feed counts)."""
    await bus.publish_many(EMAIL_JOB, [(j, (), j.job_id) for j in emails])
    for channel, job in posts:
        await bus.publish(SOCIAL_JOBS[channel], job, msg_id=job.job_id)
    await bus.publish(RELAY_REQUESTED, RelayRequested(
        relay_id=relay_id, volunteer_id=volunteer_id, message_id=message_id,
        jobs_queued={Channel.email: len(emails), **{channel: 1 for channel, _ in posts}}), msg_id=relay_id)


async def profile(bus: Bus, profile: InterestProfile) -> None:
    await bus.publish(PROFILE_UPDATED, profile, profile.volunteer_id, msg_id=profile.event_id)


async def suppressed(bus: Bus, address_hash: str, reason: str) -> None:
    """Every dispatcher closes the address (one id per address: it is news once)."""
    await bus.publish(SUPPRESSION_ADDED, Suppressed(address_hash=address_hash, reason=reason),
                      msg_id=f"suppressed:{address_hash}")


async def outcome_revised(bus: Bus, result: DispatchResult) -> None:
    """A delivered email bounced later: feed counts it as the volunteer's history does."""
    await bus.publish(OUTCOME_REVISED, result, msg_id=f"{result.job_id}:{result.outcome.value}")
