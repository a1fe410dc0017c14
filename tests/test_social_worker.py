"""The social dispatchers as their apps run them, over a real nats-server
and against the local fake networks: sealed credentials, one post per job,
429s waited out through JetStream redelivery, paused windows, revoked
tokens reported for the volunteer to see."""

from __future__ import annotations

import contextlib
import time

import nats
import pytest
from pydantic import SecretStr

from services.dispatch.social.app import create_social_app
from services.dispatch.social.settings import BlueskyDispatchSettings, MastodonDispatchSettings, XDispatchSettings
from shared.messaging import Bus
from shared.catalogue import (
    BLUESKY_JOB,
    CONTACTS,
    DISPATCH_RESULTS_STREAM,
    FEED,
    MASTODON_JOB,
    MESSAGE_WITHDRAWN,
    X_JOB,
)
from shared.events import Channel, DeliveryStatus, DispatchResult, MessageWithdrawn, SocialPostJob
from shared.sealed import TransitKeys, seal_post
from shared.settings import CommonSettings
from tests.support.fake_social import FakeSocial, Served
from tests.support.transit_keys import CONTACTS_TRANSIT_KEYS, TRANSIT_KEYS

# contacts holds every network's key; each dispatcher only its own
KEYS = TransitKeys.from_secret(SecretStr(CONTACTS_TRANSIT_KEYS))
LINK = "https://campagne.example/ecoles"


def job(n: int, creds: dict, network: str, sealed_for: str | None = None) -> SocialPostJob:
    """A post job as contacts seals it for ``network`` (for another job's id: a lifted blob)."""
    fields = dict(relay_id="relay-1", message_id="m-1", volunteer_id="vol-alice",
                  text=f"Réunion n°{n} sur nos écoles", link=LINK)
    made = seal_post(creds, KEYS[Channel(network)], job_id=sealed_for or f"job-{n}", **fields)
    return made.model_copy(update={"job_id": f"job-{n}"})


@pytest.fixture
def fake():
    with Served(FakeSocial(mastodon_tokens={"tok-alice"}, bsky_passwords={"alice.bsky.social": "abcd-efgh-ijkl-mnop"},
                           x_tokens={"x-alice"})) as server:
        yield server


@contextlib.asynccontextmanager
async def running(channel: str, nats_url: str, fake: FakeSocial, **more):
    settings_class = {"mastodon": MastodonDispatchSettings, "bluesky": BlueskyDispatchSettings,
                      "x": XDispatchSettings}[channel]
    extra = {"bluesky": {"service_url": fake.url}, "x": {"api_url": fake.url}}.get(channel, {})
    # the fake is reached through the allow-list, as `make run` reaches its fakes
    app = create_social_app(channel, settings_class(transit_key=TRANSIT_KEYS[Channel(channel)], http_port=0, common=CommonSettings(
        nats_url=nats_url, egress_allow=fake.allow()), **extra, **more))
    contacts = Bus(CONTACTS, nats_url)
    async with app.router.lifespan_context(app):
        await contacts.connect()
        try:
            yield contacts
        finally:
            await contacts.stop()


async def results(nats_url: str, channel: str, count: int, timeout: float = 20.0) -> list[DispatchResult]:
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().subscribe(f"dispatch.{channel}.results", stream=DISPATCH_RESULTS_STREAM.name,
                                             ordered_consumer=True)
        found, deadline = [], time.monotonic() + timeout
        while len(found) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} results, got {found}")
            try:
                msg = await sub.next_msg(timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            assert b"tok-alice" not in msg.data and b"abcd-efgh" not in msg.data  # no secret in a result
            found.append(DispatchResult.model_validate_json(msg.data))
        return found
    finally:
        await nc.close()


MASTODON = lambda fake, token="tok-alice": {"instance_url": fake.url, "access_token": token}  # noqa: E731


async def test_mastodon_dispatcher_posts_each_job_once_and_reports(nats_url, fake):
    async with running("mastodon", nats_url, fake) as contacts:
        for n in (1, 2):
            j = job(n, MASTODON(fake), "mastodon")
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
        j = job(1, {"access_token": "x-alice"}, "x")
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
            j = job(n, MASTODON(fake), "mastodon")
            await contacts.publish(MASTODON_JOB, j, msg_id=j.job_id)
        got = await results(nats_url, "mastodon", 2)
    assert all(r.status is DeliveryStatus.delivered for r in got)
    # the first answer said 1 left (the reserve): the second waited for the reset, never hit a 429
    assert fake.calls == ["mastodon.statuses", "mastodon.statuses"] and len(fake.statuses) == 2


async def test_revoked_credentials_are_a_permanent_failure_the_volunteer_sees(nats_url, fake):
    async with running("bluesky", nats_url, fake) as contacts:
        bad = job(1, {"handle": "alice.bsky.social", "app_password": "zzzz-zzzz-zzzz-zzzz"}, "bluesky")
        lifted = job(2, {"handle": "alice.bsky.social", "app_password": "abcd-efgh-ijkl-mnop"}, "bluesky", sealed_for="job-9")
        good = job(3, {"handle": "alice.bsky.social", "app_password": "abcd-efgh-ijkl-mnop"}, "bluesky")
        for j in (bad, lifted, good):
            await contacts.publish(BLUESKY_JOB, j, msg_id=j.job_id)
        got = {r.job_id: r for r in await results(nats_url, "bluesky", 3)}
    assert (got["job-1"].status, got["job-1"].reason) == (DeliveryStatus.failed, "token_revoked")
    assert (got["job-2"].status, got["job-2"].reason) == (DeliveryStatus.failed, "credentials_unreadable")
    assert got["job-3"].status is DeliveryStatus.delivered and len(fake.records) == 1


async def test_a_network_down_for_good_fails_after_max_deliver(nats_url, fake):
    fake.fail_5xx = 100
    async with running("x", nats_url, fake, max_deliver=2) as contacts:
        j = job(1, {"access_token": "x-alice"}, "x")
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
        j = job(1, MASTODON(fake), "mastodon")  # queued before the dispatcher heard of the withdrawal
        await contacts.publish(MASTODON_JOB, j, msg_id=j.job_id)
        (result,) = await results(nats_url, "mastodon", 1)
    assert (result.status, result.reason) == (DeliveryStatus.failed, "withdrawn")
    assert fake.statuses == [] and fake.calls == []
