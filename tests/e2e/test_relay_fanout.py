"""The click, end to end: every service a separate process as `make run`
starts them (the three social dispatchers included), the networks played
by a local server. A volunteer connects Mastodon, Bluesky and X; one relay
sends the emails, posts once on each account, returns share links for the
rest; the outcome reaches the volunteer's history and staff's facts. A
revoked token comes back to its volunteer as "reconnect". No secret lands
in a log."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.support.fake_social import FakeSocial, Served
from tests.support.volunteer_accounts import volunteer_with_a_friend
from tests.support.waiting import poll
from tools.stack import Ports, Stack, StackConfig

LINK = "https://campagne.example/ecoles"
SHORT = "Réunion publique sur nos écoles, le 12 décembre à 19 h 🎒"
MASTODON_TOKEN, BOB_TOKEN, X_TOKEN = "mastodon-token-alice-0001", "mastodon-token-bob-revoked", "x-token-alice-0001"
APP_PASSWORD = "abcd-efgh-ijkl-mnop"
SECRETS = (MASTODON_TOKEN, BOB_TOKEN, X_TOKEN, APP_PASSWORD)


@pytest.fixture
def fake():
    with Served(FakeSocial(mastodon_tokens={MASTODON_TOKEN}, bsky_passwords={"alice.bsky.social": APP_PASSWORD},
                           x_tokens={X_TOKEN})) as server:
        yield server


@pytest.fixture
def stack(tmp_path: Path, smtp_server, fake):
    cfg = StackConfig(var=tmp_path / "var", ports=Ports.free(), start_sink=False, smtp_host=smtp_server.host,
                      log_format="json", social_api_url=fake.url)
    cfg.ports.smtp = smtp_server.port
    with Stack(cfg) as running:
        yield running


def test_one_click_reaches_every_connected_network(stack, fake, smtp_server):
    cfg = stack.cfg
    contacts, staff = cfg.url("contacts"), {"Authorization": f"Bearer {cfg.staff_token}"}
    with httpx.Client(timeout=10) as http:
        alice = volunteer_with_a_friend(http, cfg, "Alice Martin", "alice@benevoles.example")
        bob = volunteer_with_a_friend(http, cfg, "Bob Nguyen", "bob@benevoles.example")
        for network, body in {
            "mastodon": {"instance_url": fake.url, "access_token": MASTODON_TOKEN, "handle": "@alice@127.0.0.1"},
            "bluesky": {"handle": "alice.bsky.social", "app_password": APP_PASSWORD},
            "x": {"access_token": X_TOKEN, "handle": "@alice"},
        }.items():
            r = http.put(f"{contacts}/me/networks/{network}", headers=alice, json=body)
            assert r.status_code == 200 and r.json()["connected"], r.text
        http.put(f"{contacts}/me/networks/mastodon", headers=bob,
                 json={"instance_url": fake.url, "access_token": BOB_TOKEN})

        r = http.post(f"{cfg.url('feed')}/messages", headers=staff, json={
            "title": "Nos écoles méritent mieux", "body": "Réunion publique le 12 décembre.",
            "interests": ["education"], "link": LINK,
            "variants": {"email": {"subject": "Réunion sur nos écoles", "body": "Rendez-vous le 12 décembre."},
                         "short": {"text": SHORT}}})
        assert r.status_code == 201, r.text
        message_id = r.json()["id"]

        def suggestion(auth):
            return poll(lambda: http.get(f"{contacts}/inbox", headers=auth).json(),
                        lambda items: items and items[0]["title"], what="the suggestion")[0]["suggestion_id"]

        # -- Alice's click
        r = http.post(f"{contacts}/inbox/{suggestion(alice)}/relay", headers=alice)
        assert r.status_code == 200, r.text
        channels = r.json()["channels"]
        assert channels["email"]["queued"] == 1
        for network in ("mastodon", "bluesky", "x"):  # X is posted: no share link for it
            assert channels[network]["status"] in ("queued", "posted") and "url" not in channels[network], channels
        assert {n for n, c in channels.items() if c["status"] == "link"} == {"facebook", "whatsapp", "linkedin",
                                                                               "telegram"}
        assert parse_qs(urlparse(channels["facebook"]["url"]).query) == {"u": [LINK]}
        assert parse_qs(urlparse(channels["whatsapp"]["url"]).query) == {"text": [f"{SHORT} {LINK}"]}

        relay_id = r.json()["relay_id"]
        done = poll(lambda: http.get(f"{contacts}/relays/{relay_id}", headers=alice).json()["channels"],
                    lambda c: all(c[n]["status"] == "posted" for n in ("mastodon", "bluesky", "x")),
                    what="the three posts")
        assert done["email"]["delivered"] == 1 or smtp_server.recorder.wait_for(1)
        assert [s["content"] for s in fake.statuses] == [f"{SHORT} {LINK}"]
        (record,) = fake.records.values()
        assert record["text"] == f"{SHORT} {LINK}" and record["facets"][0]["features"][0]["uri"] == LINK
        assert [t["text"] for t in fake.tweets] == [f"{SHORT} {LINK}"]

        # the same click again is the same relay: nothing posted twice
        again = http.post(f"{contacts}/inbox/{suggestion(alice)}/relay", headers=alice)
        assert again.json()["relay_id"] == relay_id

        # -- Bob's token was revoked: his history says so, and his account asks to reconnect
        r = http.post(f"{contacts}/inbox/{suggestion(bob)}/relay", headers=bob)
        assert r.json()["channels"]["x"]["status"] == "link"  # no X token: a share link instead
        assert "bluesky" not in r.json()["channels"]
        failed = poll(lambda: http.get(f"{contacts}/relays/{r.json()['relay_id']}", headers=bob).json()["channels"],
                      lambda c: c["mastodon"]["status"] == "failed", what="Bob's failed post")
        assert failed["mastodon"]["reason"] == "token_revoked"
        assert http.get(f"{contacts}/me/networks/mastodon", headers=bob).json()["problem"] == "token_revoked"
        assert http.get(f"{contacts}/me/networks/mastodon", headers=alice).json()["connected"] is True

    time.sleep(1)
    assert len(fake.statuses) == 1 and len(fake.records) == 1 and len(fake.tweets) == 1

    # staff's facts: one post per network for Alice, Bob's refused one counted as failed
    def facts():
        with sqlite3.connect(cfg.var / "feed.db") as db:
            return sorted(db.execute("SELECT channel, status, reason FROM deliveryfact WHERE message_id = ?"
                                     " AND channel != 'email'", (message_id,)).fetchall())
    got = poll(facts, lambda rows: len(rows) == 4, what="staff's delivery facts")
    assert got == [("bluesky", "delivered", None), ("mastodon", "delivered", None),
                   ("mastodon", "failed", "token_revoked"), ("x", "delivered", None)]

    logs = "\n".join(p.read_text() for p in (cfg.var / "log").glob("*.log"))
    assert '"service": "dispatch-mastodon"' in logs and '"service": "dispatch-bluesky"' in logs
    for secret in SECRETS:
        assert secret not in logs, "a credential reached a log"
