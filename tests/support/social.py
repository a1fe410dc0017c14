"""Social posting under test: post jobs as an adapter reads them and as
contacts seals them, the credentials the fake networks know (the fake
fixture in conftest.py serves them), a running dispatcher on a real
nats-server and the results it reports."""

from __future__ import annotations

import contextlib
import time
from datetime import datetime, timezone

import nats
from pydantic import SecretStr

from services.dispatch.social.app import create_social_app
from services.dispatch.social.settings import BlueskyDispatchSettings, MastodonDispatchSettings, XDispatchSettings
from shared.catalogue import CONTACTS, DISPATCH_RESULTS_STREAM
from shared.events import Channel, DispatchResult, SocialPostJob
from shared.messaging import Bus
from shared.sealed import TransitKeys, seal_post
from shared.settings import CommonSettings
from tests.support.fake_social import FakeSocial
from tests.support.transit_keys import CONTACTS_TRANSIT_KEYS, TRANSIT_KEYS

# contacts holds every network's key; each dispatcher only its own
KEYS = TransitKeys.from_secret(SecretStr(CONTACTS_TRANSIT_KEYS))
LINK = "https://campagne.example/ecoles"
BSKY = {"handle": "alice.bsky.social", "app_password": "abcd-efgh-ijkl-mnop"}


def post_job(n: int = 1, text: str = "Réunion publique sur nos écoles le 12 décembre 🎒", **more) -> SocialPostJob:
    """A post job as an adapter reads it once the credentials are opened."""
    return SocialPostJob(job_id=f"job-{n}", relay_id="relay-1", message_id="m-1", volunteer_id="vol-alice",
                         text=text, link=LINK, credentials="sealed-elsewhere",
                         occurred_at=datetime(2026, 11, 24, 12, n, tzinfo=timezone.utc), **more)


def sealed_post_job(n: int, creds: dict, network: str, sealed_for: str | None = None) -> SocialPostJob:
    """A post job as contacts seals it for ``network`` (for another job's id: a lifted blob)."""
    fields = dict(relay_id="relay-1", message_id="m-1", volunteer_id="vol-alice",
                  text=f"Réunion n°{n} sur nos écoles", link=LINK)
    made = seal_post(creds, KEYS[Channel(network)], job_id=sealed_for or f"job-{n}", **fields)
    return made.model_copy(update={"job_id": f"job-{n}"})


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
