"""The social dispatchers as their apps run them, over a real nats-server
and against the local fake networks: sealed credentials, one post per job,
429s waited out through JetStream redelivery, paused windows, revoked
tokens reported for the volunteer to see."""

from __future__ import annotations

import time

from shared.catalogue import (
    BLUESKY_JOB,
    FEED,
    MASTODON_JOB,
    MESSAGE_WITHDRAWN,
    X_JOB,
)
from shared.events import Channel, DeliveryStatus, MessageWithdrawn
from shared.messaging import Bus
from tests.support.social import (
    LINK,
    MASTODON,
    results,
    running,
    sealed_post_job,
)


async def test_mastodon_dispatcher_posts_each_job_once_and_reports(nats_url, fake):
    async with running("mastodon", nats_url, fake) as contacts:
        for n in (1, 2):
            j = sealed_post_job(n, MASTODON(fake), "mastodon")
            await contacts.publish(MASTODON_JOB, j, msg_id=j.job_id)
            await contacts.publish(MASTODON_JOB, j, msg_id=j.job_id)  # a retried publish: deduped
        got = await results(nats_url, "mastodon", 2)
    assert sorted(r.job_id for r in got) == ["job-1", "job-2"]
    assert all(r.status is DeliveryStatus.delivered and r.channel is Channel.mastodon for r in got)
    assert sorted(s["content"] for s in fake.statuses) == [f"Réunion n°{n} sur nos écoles {LINK}" for n in (1, 2)]


async def test_a_429_is_waited_out_then_posted(nats_url, fake):
    fake.throttle, fake.retry_after = 1, "1"
    started = time.monotonic()
    async with running("x", nats_url, fake) as contacts:
        j = sealed_post_job(1, {"access_token": "x-alice"}, "x")
        await contacts.publish(X_JOB, j, msg_id=j.job_id)
        (result,) = await results(nats_url, "x", 1)
    assert result.status is DeliveryStatus.delivered
    assert fake.calls == ["x.tweets", "x.tweets"] and len(fake.tweets) == 1
    assert time.monotonic() - started >= 1.0  # Retry-After honoured, through a delayed redelivery


async def test_an_account_pauses_when_its_window_is_nearly_spent(nats_url, fake):
    fake.window.limit, fake.window.seconds = 2, 2.0
    fake.window.reset_at = time.time() + 2.0
    async with running("mastodon", nats_url, fake) as contacts:
        for n in (1, 2):
            j = sealed_post_job(n, MASTODON(fake), "mastodon")
            await contacts.publish(MASTODON_JOB, j, msg_id=j.job_id)
        got = await results(nats_url, "mastodon", 2)
    assert all(r.status is DeliveryStatus.delivered for r in got)
    # the first answer said 1 left (the reserve): the second waited for the reset, never hit a 429
    assert fake.calls == ["mastodon.statuses", "mastodon.statuses"] and len(fake.statuses) == 2


async def test_revoked_credentials_are_a_permanent_failure_the_volunteer_sees(nats_url, fake):
    async with running("bluesky", nats_url, fake) as contacts:
        bad = sealed_post_job(1, {"handle": "alice.bsky.social", "app_password": "zzzz-zzzz-zzzz-zzzz"}, "bluesky")
        lifted = sealed_post_job(2, {"handle": "alice.bsky.social", "app_password": "abcd-efgh-ijkl-mnop"}, "bluesky", sealed_for="job-9")
        good = sealed_post_job(3, {"handle": "alice.bsky.social", "app_password": "abcd-efgh-ijkl-mnop"}, "bluesky")
        for j in (bad, lifted, good):
            await contacts.publish(BLUESKY_JOB, j, msg_id=j.job_id)
        got = {r.job_id: r for r in await results(nats_url, "bluesky", 3)}
    assert (got["job-1"].status, got["job-1"].reason) == (DeliveryStatus.failed, "token_revoked")
    assert (got["job-2"].status, got["job-2"].reason) == (DeliveryStatus.failed, "credentials_unreadable")
    assert got["job-3"].status is DeliveryStatus.delivered and len(fake.records) == 1


async def test_a_network_down_for_good_fails_after_max_deliver(nats_url, fake):
    fake.fail_5xx = 100
    async with running("x", nats_url, fake, max_deliver=2) as contacts:
        j = sealed_post_job(1, {"access_token": "x-alice"}, "x")
        await contacts.publish(X_JOB, j, msg_id=j.job_id)
        (result,) = await results(nats_url, "x", 1)
    assert (result.status, result.reason) == (DeliveryStatus.failed, "http 503")
    assert fake.calls == ["x.tweets", "x.tweets"]


async def test_a_job_of_a_withdrawn_message_is_dropped_not_posted(nats_url, fake):
    feed = Bus(FEED, nats_url)
    await feed.connect()
    await feed.publish(MESSAGE_WITHDRAWN, MessageWithdrawn(message_id="m-1"), msg_id="m-1:withdrawn")
    await feed.stop()
    async with running("mastodon", nats_url, fake) as contacts:
        j = sealed_post_job(1, MASTODON(fake), "mastodon")  # queued before the dispatcher heard of the withdrawal
        await contacts.publish(MASTODON_JOB, j, msg_id=j.job_id)
        (result,) = await results(nats_url, "mastodon", 1)
    assert (result.status, result.reason) == (DeliveryStatus.failed, "withdrawn")
    assert fake.statuses == [] and fake.calls == []
