"""The dispatchers' use cases without a broker or an SMTP server: what
``deliver_job``, ``record_bounces`` and ``post_job`` publish through their
outbound modules, and how each job's message is settled. Acks crossing a
connection, redelivery timing and the kill test stay with the real
nats-server tests (test_dispatch_email*.py, test_social_worker.py)."""

from __future__ import annotations

import aiosmtplib
import pytest
from pydantic import SecretStr

from services.dispatch.email.app import EmailDispatcher
from services.dispatch.email.domain.message import compose
from services.dispatch.email.usecases.record_bounces import record_bounces
from services.dispatch.social.app import SocialDispatcher
from services.dispatch.social.domain import POSTED
from services.dispatch.social.settings import MastodonDispatchSettings
from shared.catalogue import (
    DISPATCH_EMAIL,
    DISPATCH_MASTODON,
    EMAIL_BOUNCE,
    EMAIL_DEAD,
    EMAIL_JOB,
    EMAIL_RESULT,
    MASTODON_JOB,
    MASTODON_RESULT,
    MESSAGE_WITHDRAWN,
)
from shared.events import Channel, MessageWithdrawn, Suppressed
from shared.messaging import FakeBus
from shared.outcomes import OutcomeKind
from tests.support.dispatch_email import FROM, LIST_ID, job, sealed, settings
from tests.support.dsn import dsn
from tests.support.paths import ROOT
from tests.support.social import sealed_post_job
from tests.support.transit_keys import TRANSIT_KEYS


class Relay:
    """Stands for the SMTP pool: records what it sends, or answers ``code``."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.code: int | None = None

    async def send(self, sender, recipient, data, *, accepted) -> None:
        if self.code is not None:
            raise aiosmtplib.SMTPResponseException(self.code, "answer")
        await accepted()  # the ledger is written when the relay says 250, before the result
        self.sent.append(recipient)

    async def close(self) -> None:
        pass

    async def ready(self) -> tuple[bool, str]:
        return True, "relay"


@pytest.fixture
async def email(tmp_path):
    bus = FakeBus(DISPATCH_EMAIL)
    parts = EmailDispatcher(bus, settings("127.0.0.1", 1, ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}",
                                          rate_per_second=0, max_deliver=2))
    relay = parts.deliver.relay = Relay()
    await parts.prepare()
    yield bus, parts, relay
    await parts.close()


def results(bus: FakeBus) -> list[tuple[str, OutcomeKind, str | None]]:
    return [(r.job_id, r.outcome, r.reason) for r in bus.events(EMAIL_RESULT)]


async def test_a_job_is_sent_once_and_reported_delivered_then_acked(email):
    bus, parts, relay = email
    [msg] = await bus.deliver(EMAIL_JOB, sealed(job(1)))
    assert relay.sent == ["camille1@exemple.fr"] and msg.settled == "ack"
    assert results(bus) == [("job-1", OutcomeKind.delivered, None)]
    [again] = await bus.deliver(EMAIL_JOB, sealed(job(1)), num_delivered=2)  # a redelivery after a crash
    assert relay.sent == ["camille1@exemple.fr"] and again.settled == "ack"
    assert await parts.ledger.was_sent("job-1")


async def test_suppressed_withdrawn_and_unreadable_jobs_send_nothing(email):
    bus, parts, relay = email
    parts.suppressed.add(Suppressed(address_hash=job(1).recipient_hash, reason="unsubscribe"))
    parts.withdrawn.ids.add("m-withdrawn")
    lifted = sealed(job(4)).model_copy(update={"job_id": "job-3"})  # another job's blob: does not open
    for event in (sealed(job(1)), sealed(job(2, message_id="m-withdrawn")), lifted):
        [msg] = await bus.deliver(EMAIL_JOB, event)
        assert msg.settled == "ack"
    assert relay.sent == []
    assert [(j, k) for j, k, _ in results(bus)] == [
        ("job-1", OutcomeKind.suppressed), ("job-2", OutcomeKind.withdrawn), ("job-3", OutcomeKind.unreadable)]


async def test_a_refusal_fails_for_good_and_a_deferral_is_retried_then_dead_lettered(email):
    bus, parts, relay = email
    relay.code = 550
    await bus.deliver(EMAIL_JOB, sealed(job(1)))
    assert results(bus) == [("job-1", OutcomeKind.refused, "smtp 550")]
    relay.code = 451
    [first] = await bus.deliver(EMAIL_JOB, sealed(job(2)))
    assert first.settled == "nak" and first.delay and len(results(bus)) == 1  # no result for a retry
    [last] = await bus.deliver(EMAIL_JOB, sealed(job(2)), num_delivered=2)  # max_deliver=2 attempts
    assert last.settled == "ack"
    assert [(d.job_id, d.attempts) for d in bus.events(EMAIL_DEAD)] == [("job-2", 2)]
    assert results(bus)[-1] == ("job-2", OutcomeKind.failed_after_retries, "retries exhausted (smtp 451)")


async def test_a_hard_bounce_of_a_sent_job_leaves_as_an_event(email):
    bus, parts, relay = email
    await bus.deliver(EMAIL_JOB, sealed(job(1)))
    report = dsn(compose(job(1), FROM, LIST_ID), ("camille1@exemple.fr", "failed", "5.1.1"))
    count = await record_bounces(report, parts.ledger, parts.outbound)
    assert (count.hard, count.unknown_jobs) == (1, 0)
    [bounce] = bus.events(EMAIL_BOUNCE)
    assert (bounce.job_id, bounce.address_hash, bounce.status) == ("job-1", job(1).recipient_hash, "5.1.1")
    unknown = dsn(compose(job(9), FROM, LIST_ID), ("camille9@exemple.fr", "failed", "5.1.1"))
    assert (await record_bounces(unknown, parts.ledger, parts.outbound)).unknown_jobs == 1
    assert len(bus.events(EMAIL_BOUNCE)) == 1


class Network:
    channel = Channel.mastodon

    def __init__(self) -> None:
        self.posts: list[str] = []

    async def post(self, job, creds, *, retried=False):
        self.posts.append(job.job_id)
        return POSTED, None


async def test_a_social_job_is_posted_once_and_a_withdrawn_one_not_at_all():
    bus, network = FakeBus(DISPATCH_MASTODON), Network()
    config = MastodonDispatchSettings(_env_file=None, transit_key=SecretStr(TRANSIT_KEYS[Channel.mastodon]))
    parts = SocialDispatcher(bus, config, network, MASTODON_JOB, MASTODON_RESULT)
    await parts.withdrawn.replay.prepare()
    creds = {"instance": "https://mastodon.example", "access_token": "t"}
    [msg] = await bus.deliver(MASTODON_JOB, sealed_post_job(1, creds, "mastodon"))
    await bus.deliver(MESSAGE_WITHDRAWN, MessageWithdrawn(message_id="m-1"))
    await bus.deliver(MASTODON_JOB, sealed_post_job(2, creds, "mastodon"))
    assert network.posts == ["job-1"] and msg.settled == "ack"
    assert [(r.job_id, r.outcome) for r in bus.events(MASTODON_RESULT)] == [
        ("job-1", OutcomeKind.delivered), ("job-2", OutcomeKind.withdrawn)]


def test_the_email_dispatcher_publishes_only_through_its_outbound_module():
    """Every publish of the email dispatcher is in outbound.py (one place
    to read what leaves, and the ids it dedupes on)."""

    root = ROOT / "services/dispatch"
    publishing = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if ".publish" in p.read_text())
    assert publishing == ["email/outbound.py", "social/outbound.py"]
