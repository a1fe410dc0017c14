"""The social dispatchers' pure rules: fitting a post, Bluesky's link
facets and record keys, reading rate-limit answers, pausing an account."""

from __future__ import annotations

from datetime import datetime, timezone
from email.utils import format_datetime

from services.dispatch.social.domain import (
    DEFAULT_RETRY_SECONDS,
    TOKEN_REVOKED,
    Throttle,
    Verdict,
    Window,
    classify,
    fit,
    link_facets,
    record_key,
    retry_after,
)
from shared.postlength import graphemes, mastodon_length, x_length

LINK = "https://campagne.example/ecoles"


def test_a_post_that_fits_goes_out_as_the_text_and_its_link():
    assert fit("Réunion le 12.", LINK, 500, mastodon_length) == f"Réunion le 12. {LINK}"
    assert fit(f"Voir {LINK} ce soir", LINK, 500, mastodon_length) == f"Voir {LINK} ce soir"


def test_a_post_too_long_for_an_instance_is_cut_never_its_link():
    text = "Réunion publique sur la rénovation des écoles du quartier, " * 5
    post = fit(text, LINK, 100, mastodon_length)
    assert post.endswith(f"… {LINK}") and mastodon_length(post) <= 100
    assert mastodon_length(post) >= 95  # it keeps as much as fits
    family = "👨‍👩‍👧" * 400  # a cut never splits a grapheme
    post = fit(family, None, 300, graphemes)
    assert graphemes(post) == 300 and post.endswith("…") and post[:-1] == "👨‍👩‍👧" * 299
    assert x_length(fit("議" * 300, LINK, 280, x_length)) <= 280


def test_link_facets_count_utf8_bytes():
    text = f"Écoles : réunion 🎒 {LINK} et https://b.example/x"
    facets = link_facets(text)
    raw = text.encode()
    assert [raw[f["index"]["byteStart"]:f["index"]["byteEnd"]].decode() for f in facets] == [LINK, "https://b.example/x"]
    assert facets[0]["index"]["byteStart"] == len("Écoles : réunion 🎒 ".encode()) != text.index(LINK)
    assert facets[0]["features"] == [{"$type": "app.bsky.richtext.facet#link", "uri": LINK}]
    assert link_facets("pas de lien") == []


def test_record_keys_are_tids_stable_per_job():
    at = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
    key = record_key("job-1", at)
    assert key == record_key("job-1", at) != record_key("job-2", at)
    assert len(key) == 13 and set(key) <= set("234567abcdefghijklmnopqrstuvwxyz") and key[0] in "234567abcdefghij"
    assert record_key("job-1", at) < record_key("job-1", datetime(2026, 11, 25, tzinfo=timezone.utc))  # sortable


def test_how_long_a_429_asks_to_wait():
    now = 1_800_000_000.0
    assert retry_after({"retry-after": "30"}, "x-rate-limit-reset", now) == 30
    http_date = format_datetime(datetime.fromtimestamp(now + 90, timezone.utc), usegmt=True)
    assert abs(retry_after({"retry-after": http_date}, "x", now) - 90) < 1
    assert retry_after({"x-rate-limit-reset": str(int(now + 600))}, "x-rate-limit-reset", now) == 600
    iso = datetime.fromtimestamp(now + 120, timezone.utc).isoformat().replace("+00:00", "Z")
    assert retry_after({"x-ratelimit-reset": iso}, "x-ratelimit-reset", now) == 120  # Mastodon's form
    assert retry_after({}, "x-rate-limit-reset", now) == DEFAULT_RETRY_SECONDS


def test_an_account_pauses_before_its_window_is_spent():
    now = 1_000.0
    throttle = Throttle(reserve=1)
    throttle.observe("alice", Window.read({"ratelimit-remaining": "5", "ratelimit-reset": "1300"},
                                          "ratelimit-remaining", "ratelimit-reset", now))
    assert throttle.wait("alice", now) == 0
    throttle.observe("alice", Window(remaining=1, reset_at=1300.0))
    assert throttle.wait("alice", now) == 300 and throttle.wait("bob", now) == 0
    assert throttle.wait("alice", 1300.0) == 0  # the window reset
    throttle.observe("alice", Window(remaining=None, reset_at=None))  # no headers: nothing to decide
    assert throttle.wait("alice", now) == 0


def test_what_an_http_status_means():
    assert classify(200).verdict is Verdict.posted
    assert classify(401).verdict is Verdict.revoked and classify(401).reason == TOKEN_REVOKED
    assert classify(403).verdict is Verdict.revoked
    assert classify(429).verdict is Verdict.retry and classify(503).verdict is Verdict.retry
    assert classify(422).verdict is Verdict.failed and classify(422).reason == "http 422"
