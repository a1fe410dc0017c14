"""Each social adapter against a local server that answers as the network
does (tests/support/fake_social.py): posting, idempotency, limits, expired
sessions, revoked tokens, 429s and rate-limit headers."""

from __future__ import annotations

import pytest

from services.dispatch.social.bluesky import BlueskyPoster
from services.dispatch.social.domain import TOKEN_REVOKED, Verdict, record_key
from services.dispatch.social.mastodon import MastodonPoster
from services.dispatch.social.x import XPoster
from shared.egress import EgressPolicy, PinnedClient
from shared.postlength import mastodon_length
from tests.support.social import BSKY, LINK, post_job


@pytest.fixture
async def http(fake):
    # the fake is reached through the allow-list, as `make run` reaches its fakes
    async with PinnedClient(EgressPolicy(fake.allow()), timeout=5) as client:
        yield client


# -- Mastodon -------------------------------------------------------------------------------


async def test_mastodon_posts_once_per_job_with_the_idempotency_key(fake, http):
    poster = MastodonPoster(http)
    creds = {"instance_url": fake.url, "access_token": "tok-alice"}
    outcome, window = await poster.post(post_job(), creds)
    assert outcome.verdict is Verdict.posted
    again, _ = await poster.post(post_job(), creds, retried=True)  # a redelivery after a lost answer
    assert again.verdict is Verdict.posted
    assert len(fake.statuses) == 1
    assert fake.statuses[0]["content"] == f"Réunion publique sur nos écoles le 12 décembre 🎒 {LINK}"
    assert window.remaining == fake.window.limit - 1 and window.reset_at > 0  # the first answer's window


async def test_mastodon_fits_the_post_to_the_instances_own_limit_and_caches_it(fake, http):
    fake.max_characters = 60
    poster = MastodonPoster(http)
    creds = {"instance_url": fake.url, "access_token": "tok-alice"}
    long = "Réunion publique sur la rénovation des écoles du quartier, venez nombreux !"
    for n in (1, 2):
        outcome, _ = await poster.post(post_job(n, text=long), creds)
        assert outcome.verdict is Verdict.posted
    assert all(mastodon_length(s["content"]) <= 60 and s["content"].endswith(f"… {LINK}") for s in fake.statuses)
    assert fake.instance_asked == 1
    fake.max_characters = None  # an instance that does not say: Mastodon's default
    assert await MastodonPoster(http, default_limit=500).max_characters(fake.url) == 500


async def test_mastodon_revoked_token_and_429(fake, http):
    poster = MastodonPoster(http)
    revoked, _ = await poster.post(post_job(), {"instance_url": fake.url, "access_token": "revoked"})
    assert (revoked.verdict, revoked.reason) == (Verdict.revoked, TOKEN_REVOKED)
    fake.throttle, fake.retry_after = 1, "7"
    limited, window = await poster.post(post_job(), {"instance_url": fake.url, "access_token": "tok-alice"})
    assert (limited.verdict, limited.reason, limited.retry_after) == (Verdict.retry, "rate_limited", 7.0)
    assert window.remaining is not None
    fake.throttle, fake.retry_after = 1, None  # only X-RateLimit-Reset (ISO 8601) says when
    limited, _ = await poster.post(post_job(), {"instance_url": fake.url, "access_token": "tok-alice"})
    assert 200 < limited.retry_after <= 300
    assert fake.statuses == []


# -- Bluesky -----------------------------------------------------------------------------------




async def test_bluesky_logs_in_once_posts_with_link_facets(fake, http):
    poster = BlueskyPoster(http, service_url=fake.url)
    for n in (1, 2):
        outcome, window = await poster.post(post_job(n, text=f"Écoles : réunion 🎒 {LINK} ce soir"), BSKY)
        assert outcome.verdict is Verdict.posted, outcome
    assert fake.logins == 1
    assert len(fake.records) == 2
    record = fake.records[("did:plc:alice", record_key("job-1", post_job(1).occurred_at))]
    assert record["text"] == f"Écoles : réunion 🎒 {LINK} ce soir"  # quoted once, not twice
    assert record["facets"][0]["features"][0]["uri"] == LINK  # the fake checked the byte offsets
    assert window.remaining == fake.window.limit - 2


async def test_bluesky_cuts_to_300_graphemes(fake, http):
    poster = BlueskyPoster(http, service_url=fake.url)
    outcome, _ = await poster.post(post_job(text="é" * 400), BSKY)
    assert outcome.verdict is Verdict.posted
    (record,) = fake.records.values()
    assert record["text"].endswith(f"… {LINK}")


async def test_bluesky_refreshes_an_expired_session(fake, http):
    poster = BlueskyPoster(http, service_url=fake.url)
    await poster.post(post_job(1), BSKY)
    fake.expire_sessions()
    outcome, _ = await poster.post(post_job(2), BSKY)
    assert outcome.verdict is Verdict.posted
    assert (fake.logins, fake.refreshes, len(fake.records)) == (1, 1, 2)


async def test_bluesky_redelivered_job_does_not_post_twice(fake, http):
    poster = BlueskyPoster(http, service_url=fake.url)
    await poster.post(post_job(), BSKY)
    outcome, _ = await poster.post(post_job(), BSKY, retried=True)
    assert outcome.verdict is Verdict.posted and len(fake.records) == 1


async def test_bluesky_revoked_app_password_and_429(fake, http):
    poster = BlueskyPoster(http, service_url=fake.url)
    wrong, _ = await poster.post(post_job(), {**BSKY, "app_password": "zzzz-zzzz-zzzz-zzzz"})
    assert (wrong.verdict, wrong.reason) == (Verdict.revoked, TOKEN_REVOKED)
    await poster.post(post_job(1), BSKY)
    fake.bsky_passwords.clear()  # the volunteer revoked the app password: the session dies with it
    revoked, _ = await poster.post(post_job(2), BSKY)
    assert revoked.verdict is Verdict.revoked
    fake.bsky_passwords["alice.bsky.social"] = BSKY["app_password"]
    fake.throttle, fake.retry_after = 1, None
    limited, _ = await poster.post(post_job(3), BSKY)
    assert limited.verdict is Verdict.retry and 200 < limited.retry_after <= 300  # RateLimit-Reset, epoch


# -- X -----------------------------------------------------------------------------------------


async def test_a_cached_bluesky_session_serves_only_the_password_that_opened_it(fake, http):
    """Issue 11, finding 4: Bob connects Alice's handle with a made-up app
    password after Alice posted; the session Alice's login opened must not
    post for him."""
    poster = BlueskyPoster(http, service_url=fake.url)
    alice, _ = await poster.post(post_job(1), BSKY)
    assert alice.verdict is Verdict.posted
    bob, _ = await poster.post(post_job(2), {"handle": "alice.bsky.social", "app_password": "bobs-made-up-pass-0000"})
    assert (bob.verdict, bob.reason) == (Verdict.revoked, TOKEN_REVOKED)
    assert fake.login_attempts == [("alice.bsky.social", True), ("alice.bsky.social", False)]
    assert list(fake.records) == [("did:plc:alice", record_key("job-1", post_job(1).occurred_at))]  # nothing of Bob's
    assert fake.calls == ["bluesky.createRecord"]
    again, _ = await poster.post(post_job(3), BSKY)  # Alice's session still serves Alice, without a second login
    assert again.verdict is Verdict.posted and [ok for _, ok in fake.login_attempts] == [True, False]


async def test_a_new_app_password_logs_in_on_its_own(fake, http):
    poster = BlueskyPoster(http, service_url=fake.url)
    assert (await poster.post(post_job(1), BSKY))[0].verdict is Verdict.posted
    fake.bsky_passwords["alice.bsky.social"] = "new0-new0-new0-new0"  # Alice replaced her app password
    fresh, _ = await poster.post(post_job(2), {**BSKY, "app_password": "new0-new0-new0-new0"})
    assert fresh.verdict is Verdict.posted
    # not served by the old password's session: it logged in with the new one
    assert fake.login_attempts == [("alice.bsky.social", True), ("alice.bsky.social", True)]


async def test_x_posts_and_a_retried_duplicate_counts_as_posted(fake, http):
    poster = XPoster(http, api_url=fake.url)
    creds = {"access_token": "x-alice"}
    first, window = await poster.post(post_job(), creds)
    again, _ = await poster.post(post_job(), creds, retried=True)
    assert first.verdict is again.verdict is Verdict.posted
    elsewhere, _ = await poster.post(post_job(2), creds)  # the same text, new job: the volunteer posted it already
    assert (elsewhere.verdict, elsewhere.reason) == (Verdict.failed, "duplicate")
    assert [t["text"] for t in fake.tweets] == [f"Réunion publique sur nos écoles le 12 décembre 🎒 {LINK}"]
    assert window.remaining == fake.window.limit - 1


async def test_x_revoked_token_and_429_until_the_reset(fake, http):
    poster = XPoster(http, api_url=fake.url)
    revoked, _ = await poster.post(post_job(), {"access_token": "gone"})
    assert (revoked.verdict, revoked.reason) == (Verdict.revoked, TOKEN_REVOKED)
    fake.throttle, fake.retry_after = 1, None
    limited, _ = await poster.post(post_job(), {"access_token": "x-alice"})
    assert limited.verdict is Verdict.retry and 200 < limited.retry_after <= 300
    fake.fail_5xx = 1
    down, _ = await poster.post(post_job(), {"access_token": "x-alice"})
    assert (down.verdict, down.reason) == (Verdict.retry, "http 503")
    assert fake.tweets == []
