"""Feed's staff API through its real app (lifespan running, real
nats-server, SQLite and PostgreSQL): roles and accounts, the audit trail,
the lifecycle, the taxonomy, bad input, and k-anonymous reach.

Roles: a valid token of too low a role gets a 403 naming the role needed
(an editor cannot approve, publish or withdraw); no token, a wrong one or
a revoked one gets the bare 401 every Maillage route gives."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from services.feed.store import message_facts
from shared.catalogue import EMAIL_RESULT, RELAY_REQUESTED, SUGGESTION_MADE, TAXONOMY_STREAM
from shared.events import Channel, DeliveryStatus, DispatchResult, RelayRequested, Suggestion, utcnow
from tests.support.apps import PROVISIONING_TOKEN
from tests.support.feed import (
    ADMIN,
    bearer,
    later,
    message,
    publish_raw,
    running_feed,
    staff_token,
)
from tests.support.servers import NatsServer, start_nats
from tests.support.streams import feed_events, stream_messages
from tests.support.waiting import poll

UNAUTHORIZED = {"detail": "missing or invalid bearer token"}


@pytest.fixture
def feed(nats_url: str, db_url: str) -> Iterator[TestClient]:
    with running_feed(nats_url, db_url) as client:
        yield client



def audit(feed: TestClient, **params) -> list[dict]:
    r = feed.get("/audit", headers=ADMIN, params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def loc_msgs(r) -> dict[tuple, str]:
    return {tuple(e["loc"]): e["msg"] for e in r.json()["detail"]}


# -- roles, accounts, audit ---------------------------------------------------------------------


def test_roles_accounts_and_audit(feed: TestClient, nats_url: str):
    assert feed.get("/me", headers=ADMIN).json() == {"id": "bootstrap", "name": "bootstrap admin", "role": "admin"}
    editor = staff_token(feed, "editor", "Élise Rédaction")
    publisher = staff_token(feed, "publisher", "Paul Publie")
    me = feed.get("/me", headers=editor).json()
    assert (me["name"], me["role"]) == ("Élise Rédaction", "editor")

    r = feed.post("/drafts", headers=editor, json=message())
    assert r.status_code == 201, r.text
    draft = r.json()
    hidden = {"value": None, "suppressed": True}
    assert (draft["state"], draft["created_by"]) == ("draft", me["id"])
    assert draft["stats"] == dict.fromkeys(("volunteers_suggested", "relays", "emails_queued", "emails_delivered",
                                            "emails_failed"), hidden)  # nobody yet: "nobody" is a figure too
    assert "<strong>le 12 décembre</strong>" in draft["body_html"]
    mid = draft["id"]

    # An editor writes; approving, publishing, withdrawing, accounts and taxonomy are not theirs.
    forbidden = [("POST", f"/messages/{mid}/approve", None), ("POST", f"/messages/{mid}/publish", None),
                 ("POST", f"/messages/{mid}/withdraw", None), ("POST", "/messages", message()),
                 ("POST", "/staff", {"name": "X", "role": "admin"}), ("GET", "/staff", None),
                 ("GET", "/audit", None), ("PUT", "/taxonomy", {"terms": []})]
    for method, url, body in forbidden:
        r = feed.request(method, url, headers=editor, json=body)
        assert r.status_code == 403, f"{method} {url}: {r.status_code} {r.text}"
        assert "role" in r.json()["detail"] and "editor" in r.json()["detail"]
    assert feed.get(f"/messages/{mid}", headers=editor).json()["state"] == "draft"

    # A publisher approves and publishes, but manages no account.
    assert feed.post("/staff", headers=publisher, json={"name": "X", "role": "editor"}).status_code == 403
    r = feed.post(f"/messages/{mid}/approve", headers=publisher)
    assert r.status_code == 200 and r.json()["state"] == "approved", r.text
    r = feed.post(f"/messages/{mid}/publish", headers=publisher)
    assert r.status_code == 200, r.text
    published = r.json()
    assert published["state"] == "published" and published["published_at"]
    assert published["stats"] == draft["stats"]
    [(headers, event)] = feed_events(nats_url, "published")
    assert headers["Nats-Msg-Id"] == mid and event["message_id"] == mid
    assert event["body"] == message()["body"]  # the Markdown source travels; body_html is feed's rendering

    # An admin lists and revokes accounts; a revoked token is a 401 at once.
    accounts = feed.get("/staff", headers=ADMIN).json()
    assert [(a["name"], a["role"]) for a in accounts] == [("Élise Rédaction", "editor"), ("Paul Publie", "publisher")]
    assert all("token" not in a and "token_hash" not in a for a in accounts)
    r = feed.post(f"/staff/{me['id']}/revoke", headers=ADMIN)
    assert r.status_code == 200 and r.json()["revoked_by"] == "bootstrap", r.text
    for url in ("/me", "/messages", f"/messages/{mid}"):
        r = feed.get(url, headers=editor)
        assert (r.status_code, r.json()) == (401, UNAUTHORIZED) and r.headers["www-authenticate"] == "Bearer"
    assert feed.post("/staff/0123456789abcdef/revoke", headers=ADMIN).status_code == 404

    # Every change is in the audit: who, what, when (newest first), never a token.
    entries = audit(feed)
    assert [(e["action"], e["actor_name"]) for e in reversed(entries)] == [
        ("staff.create", "bootstrap admin"), ("staff.create", "bootstrap admin"),
        ("message.create", "Élise Rédaction"), ("message.approve", "Paul Publie"),
        ("message.publish", "Paul Publie"), ("staff.revoke", "bootstrap admin"),
    ]
    assert all(e["at"] for e in entries)
    trail = audit(feed, target=f"message:{mid}")
    assert [(e["action"], e["detail"].get("from"), e["detail"].get("to")) for e in trail] == [
        ("message.publish", "approved", "published"), ("message.approve", "draft", "approved"),
        ("message.create", None, None)]
    page = audit(feed, limit=2)
    assert len(page) == 2 and audit(feed, before=page[-1]["id"])[0]["id"] < page[-1]["id"]
    assert feed.get("/audit", headers=ADMIN, params={"limit": 2}).json()["next_before"] == page[-1]["id"]


def test_every_feed_route_wants_a_valid_token(feed: TestClient):
    """No token, a forged one, another service's or a revoked one: the bare
    401, before the body is even read."""
    editor = staff_token(feed, "editor")
    accounts = feed.get("/staff", headers=ADMIN).json()
    assert feed.post(f"/staff/{accounts[0]['id']}/revoke", headers=ADMIN).status_code == 200
    bad = {"none": {}, "forged": bearer("staff_" + "A" * 43), "provisioning": bearer(PROVISIONING_TOKEN),
           "revoked": editor}
    paths = feed.get("/openapi.json").json()["paths"]
    ops = [(m.upper(), p) for p, methods in paths.items() for m in methods
           if p not in {"/healthz", "/readyz", "/metrics", "/asyncapi.json"}]
    assert len(ops) == 17, ops
    for method, path in ops:
        url = path.replace("{message_id}", "m").replace("{account_id}", "a")
        for how, auth in bad.items():
            r = feed.request(method, url, headers={**auth, "Content-Type": "application/json"}, content=b"{not json")
            assert (r.status_code, r.json()) == (401, UNAUTHORIZED), f"{method} {path} with {how}: {r.text}"
    assert feed.get("/messages", headers=ADMIN).json() == []


# -- the lifecycle ---------------------------------------------------------------------------------


def test_lifecycle_conflicts_edits_and_withdrawal(feed: TestClient, nats_url: str):
    publisher = staff_token(feed, "publisher")
    mid = feed.post("/drafts", headers=ADMIN, json=message()).json()["id"]

    r = feed.post(f"/messages/{mid}/publish", headers=publisher)
    assert r.status_code == 409
    assert r.json()["detail"].startswith("cannot publish a message that is draft: publish goes approved → published")

    r = feed.patch(f"/drafts/{mid}", headers=ADMIN, json={"title": "Nos écoles, vraiment", "priority": 3})
    assert r.status_code == 200 and (r.json()["title"], r.json()["priority"]) == ("Nos écoles, vraiment", 3)
    assert feed.post(f"/messages/{mid}/approve", headers=publisher).json()["state"] == "approved"
    r = feed.patch(f"/drafts/{mid}", headers=ADMIN, json={"link": "https://campagne.example/ecoles"})
    assert (r.json()["state"], r.json()["approved_by"]) == ("draft", None)  # edited: approve it again
    assert r.json()["short_post"] == "Réunion publique sur nos écoles le 12/12. https://campagne.example/ecoles"
    r = feed.patch(f"/drafts/{mid}", headers=ADMIN, json={"priority": "high"})
    assert r.status_code == 422 and ("body", "priority") in loc_msgs(r)
    r = feed.patch(f"/drafts/{mid}", headers=ADMIN, json={"title": None})
    assert r.status_code == 422 and ("body", "title") in loc_msgs(r)

    assert feed.post(f"/messages/{mid}/approve", headers=publisher).status_code == 200
    assert feed.post(f"/messages/{mid}/approve", headers=publisher).status_code == 409
    assert feed.post(f"/messages/{mid}/publish", headers=publisher).json()["state"] == "published"
    r = feed.patch(f"/drafts/{mid}", headers=ADMIN, json={"title": "Trop tard"})
    assert r.status_code == 409 and "cannot edit a message that is published" in r.json()["detail"]

    r = feed.post(f"/messages/{mid}/withdraw", headers=publisher)
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["withdrawn_reason"]) == ("withdrawn", "withdrawn")
    [(headers, event)] = feed_events(nats_url, "withdrawn")
    assert (event["message_id"], event["reason"], headers["Nats-Msg-Id"]) == (mid, "withdrawn", f"{mid}:withdrawn")
    r = feed.post(f"/messages/{mid}/withdraw", headers=publisher)
    assert r.status_code == 409 and "cannot withdraw a message that is withdrawn" in r.json()["detail"]

    # A draft that never went out is closed without telling anyone.
    other = feed.post("/drafts", headers=ADMIN, json=message(title="Brouillon")).json()["id"]
    assert feed.post(f"/messages/{other}/withdraw", headers=publisher).json()["state"] == "withdrawn"
    assert [e["message_id"] for _, e in feed_events(nats_url, "withdrawn")] == [mid]
    assert [m["id"] for m in feed.get("/messages", headers=ADMIN, params={"state": "withdrawn"}).json()] == [
        other, mid]
    for url in ("/messages/nope", "/messages/nope/reach"):
        assert feed.get(url, headers=ADMIN).status_code == 404
    assert feed.post("/messages/nope/publish", headers=ADMIN).status_code == 404
    assert feed.patch("/drafts/nope", headers=ADMIN, json={}).status_code == 404


# -- the taxonomy ----------------------------------------------------------------------------------


TERMS = [{"name": "transport", "label_fr": "Transports", "label_en": "Transport"},
         {"name": "education", "label_fr": "Éducation", "label_en": "Education"}]


def test_taxonomy_is_published_on_nats_and_enforced(feed: TestClient, nats_url: str):
    assert feed.get("/taxonomy", headers=ADMIN).json()["terms"] == []
    assert feed.post("/drafts", headers=ADMIN, json=message(interests=["anything"])).status_code == 201
    keyed = {**ADMIN, "Idempotency-Key": "before-the-taxonomy"}
    first = feed.post("/messages", headers=keyed, json=message(interests=["anything"])).json()

    r = feed.put("/taxonomy", headers=ADMIN, json={"terms": TERMS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [t["name"] for t in body["terms"]] == ["education", "transport"] and body["announced"] is True
    [(_, headers, event)] = stream_messages(nats_url, TAXONOMY_STREAM.name)
    assert sorted(t["name"] for t in event["terms"]) == ["education", "transport"]
    assert len(headers["Nats-Msg-Id"]) == 64

    again = feed.put("/taxonomy", headers=ADMIN, json={"terms": list(reversed(TERMS))}).json()
    assert (again["version"], again["digest"]) == (body["version"], body["digest"])  # same content: no change
    assert len(stream_messages(nats_url, TAXONOMY_STREAM.name)) == 1
    assert [e["detail"] for e in audit(feed, action="taxonomy.update")] == [
        {"added": ["education", "transport"], "removed": []}]

    r = feed.post("/drafts", headers=ADMIN, json=message(interests=["education", "seniors"]))
    assert r.status_code == 422
    assert "'seniors'" in loc_msgs(r)[("body", "interests", 1)]
    r = feed.post("/messages", headers=ADMIN, json=message(interests=["seniors"]))
    assert r.status_code == 422
    retry = feed.post("/messages", headers=keyed, json=message(interests=["anything"]))  # not judged again
    assert retry.status_code in (200, 201) and retry.json()["id"] == first["id"], retry.text
    assert feed.post("/drafts", headers=ADMIN, json=message(interests=["education", "local:villeurbanne"])).status_code == 201

    r = feed.put("/taxonomy", headers=ADMIN, json={"terms": [*TERMS, TERMS[0]]})
    assert r.status_code == 422 and ("body", "terms", 2, "name") in loc_msgs(r)
    r = feed.put("/taxonomy", headers=ADMIN, json={"terms": [{"name": "Bad Word", "label_fr": "x", "label_en": "x"}]})
    assert r.status_code == 422
    assert feed.put("/taxonomy", headers=staff_token(feed, "publisher"), json={"terms": TERMS}).status_code == 403

    r = feed.put("/taxonomy", headers=ADMIN, json={"terms": TERMS[:1]})
    assert r.json()["version"] == body["version"] + 1
    [(_, _, latest)] = stream_messages(nats_url, TAXONOMY_STREAM.name)  # the stream keeps the last one
    assert [t["name"] for t in latest["terms"]] == ["transport"]


# -- bad input ---------------------------------------------------------------------------------------


def test_bad_input_gets_clear_errors_and_stores_nothing(feed: TestClient):
    long_link = "https://campagne.example/" + "p" * 36
    cases = [
        (message(link=long_link, variants={"email": {"subject": "S", "body": "B"}, "short": {"text": "a" * 250}}),
         ("body", "variants", "short", "text"), "312 graphemes, Bluesky allows 300"),
        (message(variants={"email": {"subject": "S", "body": "B"}, "short": {"text": "議" * 150}}),
         ("body", "variants", "short", "text"), "300 characters, X allows 280"),
        (message(body="Bonjour <script>fetch('//evil.example')</script>"), ("body", "body"), "<script> element"),
        (message(body="![x](y.png) <img src=x onerror=alert(1)>"), ("body", "body"), "onerror= attribute"),
        (message(body="[programme](javascript:alert(document.cookie))"), ("body", "body"), "javascript: link"),
        (message(body="x" * 50_001), ("body", "body"), "50000"),
        (message(publish_at=later(7200), expires_at=later(3600)), ("body", "expires_at"), "publish_at"),
        (message(expires_at=later(-60)), ("body", "expires_at"), "already past"),
        (message(publish_at="2026-12-01T10:00:00"), ("body", "publish_at"), "timezone"),
        (message(link="javascript:alert(1)"), ("body", "link"), "http(s) URL"),
        (message(locales=["French"]), ("body", "locales", 0), "pattern"),
        (message(priority=7), ("body", "priority"), "3"),
        # every relayed email's Subject header: no header of the writer's own making
        (message(variants={"email": {"subject": "Réunion\r\nBcc: tous@exemple.fr", "body": "B"}}),
         ("body", "variants", "email", "subject"), "control character (found U+000D"),
        (message(variants={"email": {"subject": "Réunion\u2028Bcc: tous@exemple.fr", "body": "B"}}),
         ("body", "variants", "email", "subject"), "control character (found U+2028"),
        (message(title="Nos écoles\nX-Injected: oui"), ("body", "title"), "control character (found U+000A"),
    ]
    for body, loc, words in cases:
        for url in ("/drafts", "/messages"):
            r = feed.post(url, headers=ADMIN, json=body)
            assert r.status_code == 422, f"{url} {loc}: {r.status_code} {r.text[:300]}"
            msgs = loc_msgs(r)
            assert loc in msgs and words in msgs[loc], f"{loc} / {words!r} not in {msgs}"
    assert feed.get("/messages", headers=ADMIN).json() == []

    # An edit is held to the same rule, and leaves the draft as it was.
    draft = feed.post("/drafts", headers=ADMIN, json=message()).json()
    r = feed.patch(f"/drafts/{draft['id']}", headers=ADMIN,
                   json={"variants": {"email": {"subject": "S\r\nContent-Type: text/html", "body": "B"}}})
    assert r.status_code == 422 and "control character" in loc_msgs(r)[("body", "variants", "email", "subject")]
    assert feed.get(f"/messages/{draft['id']}", headers=ADMIN).json()["variants"] == draft["variants"]

    # The limits are the campaign's settings.
    feed.app.state.settings.limit_mastodon = 30
    r = feed.post("/drafts", headers=ADMIN, json=message())
    assert r.status_code == 422, r.text
    assert loc_msgs(r)[("body", "variants", "short", "text")].startswith(
        "variants.short.text: 41 characters, Mastodon allows 30")
    feed.app.state.settings.limit_mastodon = 500

    huge = b'{"title": "' + b"x" * (1024 * 1024) + b'"}'
    r = feed.post("/drafts", headers={**ADMIN, "Content-Type": "application/json"}, content=huge)
    assert r.status_code == 413 and "at most" in r.json()["detail"]


# -- reach --------------------------------------------------------------------------------------------


def test_reach_is_k_anonymous_and_events_count_once(feed: TestClient, nats_url: str):
    published = feed.post("/messages", headers=ADMIN, json=message(interests=["education", "transport"])).json()
    mid = published["id"]
    vols = [f"vol{i}" for i in range(7)]
    suggestions = [
        (SUGGESTION_MADE.subject(v), f"s-{v}", Suggestion(
            suggestion_id=f"s-{v}", volunteer_id=v, message_id=mid, audience_size=3,
            matched_interests=("education",) if i < 5 else ("education", "transport"),
            matched_regions=("Bretagne",) if i < 6 else ("Bretagne", "Corse")))
        for i, v in enumerate(vols)
    ]
    relays = [(RELAY_REQUESTED.subject(), f"r-{v}", RelayRequested(
        relay_id=f"r-{v}", volunteer_id=v, message_id=mid, jobs_queued={Channel.email: 2})) for v in vols[:6]]
    # 9 results from 5 volunteers: 7 delivered by 4 of them, one opted out, one bounced
    outcomes = [("delivered", None)] * 7 + [("failed", "suppressed"), ("failed", "smtp 550")]
    results = [(EMAIL_RESULT.subject(), f"j{n}:result", DispatchResult(
        job_id=f"j{n}", relay_id=f"r-{vols[n // 2]}", message_id=mid, volunteer_id=vols[n // 2],
        channel=Channel.email, status=DeliveryStatus(status), reason=reason))
        for n, (status, reason) in enumerate(outcomes)]
    # Results before their relays, relays before their suggestions (out of order), and each
    # event a second time under another Nats-Msg-Id (a redelivery past the dedupe window).
    publish_raw(nats_url, results + relays + suggestions)
    publish_raw(nats_url, [(subject, f"{msg_id}:again", event) for subject, msg_id, event in
                           results + relays + suggestions])

    shown, hidden = (lambda v: {"value": v, "suppressed": False}), {"value": None, "suppressed": True}
    # Staff read only once every fact is in (a reading in between would freeze a partial figure
    # until k more volunteers moved it, as it should).
    def counted() -> tuple[int, int, int]:
        with Session(feed.app.state.engine) as s:
            f = message_facts(s, mid, utcnow())
        return len(f.suggestions), len(f.relays), sum(d[4] for d in f.deliveries)

    poll(counted, lambda n: n == (7, 6, 9), timeout=15, what="the facts")
    time.sleep(feed.app.state.settings.reach_settle_seconds + 0.2)
    # 7 delivered, but by 4 volunteers: k counts volunteers, not recipients
    stats = feed.get(f"/messages/{mid}", headers=ADMIN).json()["stats"]
    assert stats == {"volunteers_suggested": shown(7), "relays": shown(6), "emails_queued": shown(12),
                     "emails_delivered": hidden, "emails_failed": hidden}
    time.sleep(0.5)  # the duplicates arrived too, and changed nothing
    assert counted() == (7, 6, 9)
    assert feed.get(f"/messages/{mid}", headers=ADMIN).json()["stats"] == stats

    reach = feed.get(f"/messages/{mid}/reach", headers=ADMIN).json()
    assert reach["k"] == 5
    assert (reach["volunteers_suggested"], reach["audience"], reach["relays"]) == (shown(7), shown(21), shown(6))
    assert reach["channels"]["email"] == {"queued": shown(12), "reached": hidden, "opted_out": hidden,
                                          "bounced": hidden, "dropped": hidden, "failed": hidden}
    assert reach["channels"]["bluesky"]["queued"] == hidden
    assert reach["by_interest"] == {
        "education": {"volunteers_suggested": shown(7), "audience": shown(21), "relays": shown(6),
                      "reached": hidden},
        "transport": {"volunteers_suggested": hidden, "audience": hidden, "relays": hidden, "reached": hidden},
    }
    timeline = feed.get(f"/messages/{mid}/reach/timeline", headers=ADMIN).json()
    assert timeline["channels"]["email"] == [] and timeline["channels"]["bluesky"] == []
    # Untargeted: Corse (one volunteer) is not even a row.
    assert reach["by_region"] == {"Bretagne": {"volunteers_suggested": shown(7), "audience": shown(21),
                                               "relays": shown(6), "reached": hidden}}
    # An editor sees the very same figures.
    editor = staff_token(feed, "editor")
    assert feed.get(f"/messages/{mid}", headers=editor).json()["stats"] == stats
    assert feed.get(f"/messages/{mid}/reach", headers=editor).json() == reach


def test_nats_down_saves_the_message_and_a_retry_publishes_it(nats_server: NatsServer, tmp_path: Path):
    db_url = f"sqlite:///{tmp_path / 'feed.db'}"
    restarted: NatsServer | None = None
    try:
        with running_feed(nats_server.url, db_url) as feed:
            nats_server.process.terminate()
            nats_server.process.wait(10)
            keyed = {**ADMIN, "Idempotency-Key": "while-nats-sleeps"}
            r = feed.post("/messages", headers=keyed, json=message())
            assert r.status_code == 503, r.text
            assert "retry with the same Idempotency-Key" in r.json()["detail"]
            [saved] = feed.get("/messages", headers=ADMIN).json()
            assert (saved["state"], saved["published_at"]) == ("approved", None)

            restarted = start_nats(tmp_path / "jetstream", nats_server.port)
            poll(lambda: feed.get("/readyz").status_code, lambda code: code == 200, timeout=20, what="NATS back")
            r = feed.post("/messages", headers=keyed, json=message())
            assert r.status_code in (200, 201) and r.json()["state"] == "published", r.text
            assert r.json()["id"] == saved["id"]
            assert [e["message_id"] for _, e in feed_events(restarted.url, "published")] == [saved["id"]]
    finally:
        if restarted is not None:
            restarted.process.terminate()
            restarted.process.wait(10)
