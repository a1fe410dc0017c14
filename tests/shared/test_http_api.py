"""Each service's HTTP API, through its real FastAPI app: the lifespan runs
(``with TestClient(app)``), so the app's Bus is connected to a real
nats-server, and feed and contacts store in SQLite and in PostgreSQL.

What is proven here:
- every route of every service's OpenAPI spec, the operations routes and
  the contacts' public links aside, answers 401 + ``WWW-Authenticate:
  Bearer`` without a token or with a wrong one, before any other check, and
  never hands out data or changes any;
- the public links (/auth/redeem, /u/{token}, /consent/{token}) carry their
  own proof: a forged, tampered, expired or other-purpose token is a 400
  that reveals nothing and changes nothing;
- a volunteer sees and touches only their own contacts, imports, inbox and
  relays: the walk calls every route of the spec that takes an id with
  another volunteer's real ids (and fails on a new kind of id it does not
  know), expects the 404 a non-existent id gets, no trace of the other
  book in any answer, and the other book unchanged afterwards;
- staff / provisioning tokens open no volunteer route, and a volunteer's
  token opens no /admin route;
- a bad body is a 422 naming the field, an unknown field included, on every
  body of the spec; a duplicate contact is a 409;
- /healthz, /readyz and /metrics work (and /readyz notices NATS going away);
- an Idempotency-Key makes a retried publish the same message;
- a volunteer's profile holds counts of confirmed contacts only, restricted
  to the interests they chose to share.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from pathlib import Path
from typing import Any

import nats
from fastapi.testclient import TestClient
from sqlmodel import Session

from services.contacts.store import (
    CampaignMessage,
    ConsentEvent,
    Contact,
    ImportJob,
    Relay,
    SentItem,
    Suppression,
    Volunteer,
)
from shared.catalogue import DISPATCH_JOBS_STREAM, PROFILE_UPDATED, SUPPRESSIONS_STREAM
from shared.links import LinkSigner
from tests.support.apps import PROVISIONING_TOKEN, STAFF_TOKEN, build_apps
from tests.support.http_api import (
    BAD_AUTHORIZATIONS,
    DUMMY_ID,
    ID_KINDS,
    OWN_PARAMS,
    PUBLIC_OPS,
    add_contact,
    assert_locked,
    bearer,
    body_kind,
    concurrently,
    count_rows,
    email_of,
    example_body,
    fill,
    finished_import,
    google_csv,
    items,
    loc_of,
    message_draft,
    new_volunteer,
    operations,
    path_params,
    samples,
    schema_properties,
    upload,
)
from tests.support.servers import NatsServer, start_nats
from tests.support.streams import stream_payloads
from tests.support.transit_keys import opened_job
from tests.support.waiting import poll

# -- 1. no route opens without the right token ----------------------------------------------


def test_every_feed_route_requires_the_staff_token(feed: TestClient):
    """Every feed route, with dummy and with real ids, refuses a missing or
    wrong token with a bare 401 and creates nothing."""
    title = "Confidential draft title 4f1c"
    r = feed.post("/messages", headers=bearer(STAFF_TOKEN), json=message_draft(title=title))
    assert r.status_code == 201, r.text
    message_id = r.json()["id"]

    ops = operations(feed)
    assert {(m, p) for m, p, _ in ops} == {
        ("POST", "/messages"), ("GET", "/messages"), ("GET", "/messages/{message_id}"),
        ("GET", "/messages/{message_id}/reach"), ("GET", "/messages/{message_id}/reach/timeline"),
        ("POST", "/messages/{message_id}/approve"),
        ("POST", "/messages/{message_id}/publish"), ("POST", "/messages/{message_id}/withdraw"),
        ("POST", "/drafts"), ("PATCH", "/drafts/{message_id}"), ("GET", "/taxonomy"), ("PUT", "/taxonomy"),
        ("GET", "/me"), ("GET", "/staff"), ("POST", "/staff"), ("POST", "/staff/{account_id}/revoke"),
        ("GET", "/audit"),
    }
    bad = {**BAD_AUTHORIZATIONS, "provisioning token": bearer(PROVISIONING_TOKEN)}
    for method, path, op in ops:
        assert_locked(feed, method, path, op, bad)
        assert_locked(feed, method, path, op, bad, ids={"message_id": message_id},
                      secrets=(title, message_id))

    listed = feed.get("/messages", headers=bearer(STAFF_TOKEN))
    assert [m["id"] for m in listed.json()] == [message_id], "an unauthenticated POST created a message"


def test_every_contacts_route_requires_a_token(contacts: TestClient):
    """Every contacts route but the public links, with dummy and with real
    ids, refuses a missing or wrong token with a bare 401, reveals no
    contact and changes nothing (an anonymous upload imports nothing)."""
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    contact = add_contact(contacts, alice, "Camille Durand", "camille.durand@exemple.fr", ["education"])
    r = upload(contacts, alice, google_csv("Rémi Import,Rémi,Import,,,remi.import@exemple.fr,"))
    assert r.status_code == 202, r.text
    import_id = r.json()["id"]
    assert finished_import(contacts, alice, import_id)["imported"] == 1

    ops = operations(contacts)
    assert len(ops) >= 20, ops
    public = {(m, p) for m, p, _ in ops if (m, p) in PUBLIC_OPS}
    assert public == PUBLIC_OPS, f"public routes changed: {public ^ PUBLIC_OPS}"
    bad = {**BAD_AUTHORIZATIONS, "staff token": bearer(STAFF_TOKEN)}
    secrets = (contact["name"], email_of(contact), contact["id"], "Rémi Import", "remi.import@exemple.fr",
               import_id)
    for method, path, op in ops:
        if (method, path) in PUBLIC_OPS:
            continue  # their own proof: test_public_links_refuse_forged_and_other_purpose_tokens
        assert_locked(contacts, method, path, op, bad)
        assert_locked(contacts, method, path, op, bad,
                      ids={"contact_id": contact["id"], "import_id": import_id,
                           "suggestion_id": DUMMY_ID, "relay_id": DUMMY_ID},
                      secrets=secrets)

    assert count_rows(contacts, Volunteer) == 1, "an unauthenticated POST created a volunteer"
    assert count_rows(contacts, Contact) == 2
    assert count_rows(contacts, ImportJob) == 1, "an unauthenticated upload started an import"
    assert sorted(c["name"] for c in items(contacts, alice)) == ["Camille Durand", "Rémi Import"]
    assert contacts.get(f"/contacts/{contact['id']}", headers=alice).json() == contact


def test_matcher_and_dispatch_expose_only_the_operations_routes(matcher: TestClient, dispatch: TestClient):
    """They have no data route; were one added, the same walk locks it."""
    for client in (matcher, dispatch):
        ops = operations(client)
        for method, path, op in ops:
            assert_locked(client, method, path, op, BAD_AUTHORIZATIONS)
        # dispatch-email reads bounce reports (DSNs), behind its own token
        expected = [("POST", "/bounces")] if client is dispatch else []
        assert [(m, p) for m, p, _ in ops] == expected, f"new routes: walk them ({ops})"
        assert set(client.get("/openapi.json").json()["paths"]) == {
            "/healthz", "/readyz", "/metrics", "/asyncapi.json", *(p for _, p in expected)}


def test_auth_comes_before_json_parsing(feed: TestClient, contacts: TestClient):
    """A body that is not even JSON, sent without a token, must get the 401
    too: an anonymous caller learns nothing before authenticating (the
    public links aside, which have no token to check)."""
    failures = []
    for client in (feed, contacts):
        for method, path, op in operations(client):
            if "requestBody" not in op or (method, path) in PUBLIC_OPS:
                continue
            url = path.replace("{", "").replace("}", "")
            r = client.request(method, url, content=b"{not json",
                               headers={"Content-Type": "application/json"})
            if r.status_code != 401:
                failures.append(f"{method} {path} -> {r.status_code} {r.text[:80]}")
    assert not failures, "routes that parse the body before checking the token:\n" + "\n".join(failures)


# -- 2. a volunteer's space is theirs alone --------------------------------------------------


def book_snapshot(contacts: TestClient, auth: dict[str, str], contact_ids: list[str], import_ids: list[str],
                  relay_ids: list[str]) -> dict[str, Any]:
    """Everything a volunteer can read of their own space, route by route."""
    paths = ["/me", "/me/profile", "/contacts?limit=500", "/contacts/export?format=json",
             "/contacts/export?format=csv", "/inbox"]
    paths += [p for cid in contact_ids for p in (f"/contacts/{cid}", f"/contacts/{cid}/export")]
    paths += [p for iid in import_ids for p in (f"/imports/{iid}", f"/imports/{iid}/rows")]
    paths += [f"/relays/{rid}" for rid in relay_ids]
    snapshot = {}
    for path in paths:
        r = contacts.get(path, headers=auth)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
        snapshot[path] = r.json() if r.headers["content-type"].startswith("application/json") else r.text
    # The profile is computed on each read: a fresh event id and time.
    snapshot["/me/profile"] = snapshot["/me/profile"]["audience"]
    return snapshot


def test_volunteers_are_isolated_from_each_other(feed: TestClient, contacts: TestClient, matcher: TestClient,
                                                 nats_url: str):
    alice_id, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    bob_id, bob = new_volunteer(contacts, "Bob Leroy", "bob@benevoles.example")
    assert contacts.get("/me", headers=alice).json()["volunteer_id"] == alice_id
    assert contacts.get("/me", headers=bob).json()["volunteer_id"] == bob_id

    a1 = add_contact(contacts, alice, "Camille Durand", "camille.durand@exemple.fr", ["education"])
    a2 = add_contact(contacts, alice, "Hugo Lefèvre", "hugo.lefevre@exemple.fr", ["education"])
    b1 = add_contact(contacts, bob, "Louis Petit", "louis.petit@exemple.fr", ["education"],
                     phones=["+33 6 11 22 33 44"], tags=["voisins"], notes="Bob's private note 7e2a")
    b2 = add_contact(contacts, bob, "Inès Moreau", "ines.moreau@exemple.fr", ["seniors"])
    # The same person may be in both books: the uniqueness is per book.
    b3 = add_contact(contacts, bob, "Camille D.", "Camille.Durand@EXEMPLE.fr", ["education"])
    assert email_of(b3) == email_of(a1)
    # One Bob has not invited yet: a missing ownership check would invite her.
    b4 = add_contact(contacts, bob, "Zoé Lambert", "zoe.lambert@exemple.fr", ["housing"], consent="unknown")

    # Bob imports a file: one row lands, one is rejected (its text is kept, sealed).
    r = upload(contacts, bob, google_csv("Louise Garnier,Louise,Garnier,education,Home,louise.garnier@exemple.fr,",
                                         "Rejected Secret,Rejected,Secret,,Home,rejected-secret-at-nowhere,"))
    assert r.status_code == 202, r.text
    bob_import_id = r.json()["id"]
    report = finished_import(contacts, bob, bob_import_id)
    assert (report["status"], report["imported"], report["rejected"]) == ("done", 1, 1), report
    b5 = next(c for c in items(contacts, bob) if c["name"] == "Louise Garnier")
    bob_contacts = [b1, b2, b3, b4, b5]

    # Lists hold only one's own contacts.
    assert [c["id"] for c in items(contacts, alice)] == [a1["id"], a2["id"]]
    assert {c["id"] for c in items(contacts, bob)} == {c["id"] for c in bob_contacts}

    # Another's contact does not exist for Alice: read and delete are 404s.
    for contact in bob_contacts:
        r = contacts.get(f"/contacts/{contact['id']}", headers=alice)
        assert r.status_code == 404, r.text
        assert email_of(contact).lower() not in r.text.lower() and contact["name"] not in r.text
        r = contacts.delete(f"/contacts/{contact['id']}", headers=alice)
        assert r.status_code == 404, r.text
    assert len(items(contacts, bob)) == 5, "Alice deleted one of Bob's contacts"
    assert contacts.get(f"/contacts/{b1['id']}", headers=bob).status_code == 200

    # A message for "education" reaches both inboxes through the matcher.
    poll(lambda: matcher.get("/readyz").json()["checks"]["index"],
         lambda c: c["ok"] and c["detail"] == "2 profiles", what="the matcher to index both profiles")
    published = feed.post("/messages", headers=bearer(STAFF_TOKEN), json=message_draft())
    assert published.status_code == 201, published.text
    message_id = published.json()["id"]

    def inbox_of(auth):
        r = contacts.get("/inbox", headers=auth)
        assert r.status_code == 200, r.text
        return r.json()

    bob_inbox = poll(lambda: inbox_of(bob), lambda entries: len(entries) == 1, what="Bob's suggestion")
    alice_inbox = poll(lambda: inbox_of(alice), lambda entries: len(entries) == 1, what="Alice's suggestion")
    bob_suggestion, alice_suggestion = bob_inbox[0]["suggestion_id"], alice_inbox[0]["suggestion_id"]
    assert bob_suggestion != alice_suggestion
    assert bob_inbox[0]["message_id"] == alice_inbox[0]["message_id"] == message_id
    # Confirmed contacts the message fits (Louise, imported, is not confirmed).
    assert bob_inbox[0]["audience_size"] == 2 and alice_inbox[0]["audience_size"] == 2

    # Bob relays his suggestion; Alice can neither relay it nor follow it.
    poll(lambda: contacts.post(f"/inbox/{bob_suggestion}/relay", headers=bob),
         lambda r: r.status_code != 409, what="contacts to receive the message")  # 409: not arrived yet
    bob_relay = contacts.post(f"/inbox/{bob_suggestion}/relay", headers=bob)
    assert bob_relay.status_code == 200, bob_relay.text
    assert bob_relay.json()["channels"]["email"]["queued"] == 2
    bob_relay_id = bob_relay.json()["relay_id"]

    r = contacts.post(f"/inbox/{bob_suggestion}/relay", headers=alice)
    assert r.status_code == 404, r.text
    r = contacts.get(f"/relays/{bob_relay_id}", headers=alice)
    assert r.status_code == 404, r.text
    assert contacts.get(f"/relays/{bob_relay_id}", headers=bob).status_code == 200
    assert [i["suggestion_id"] for i in inbox_of(alice)] == [alice_suggestion]
    assert inbox_of(alice)[0]["relay_id"] is None, "Bob's relay shows in Alice's inbox"

    # Alice's own relay reaches only her own book; Camille, in both books,
    # already got the message from Bob.
    alice_relay = contacts.post(f"/inbox/{alice_suggestion}/relay", headers=alice)
    assert alice_relay.status_code == 200, alice_relay.text
    assert alice_relay.json()["channels"]["email"]["queued"] == 1
    assert alice_relay.json()["channels"]["email"]["skipped"] == {"unreachable": 1}
    alice_relay_id = alice_relay.json()["relay_id"]
    assert contacts.get(f"/relays/{alice_relay_id}", headers=bob).status_code == 404

    # -- the walk: every route of the spec, as Alice, with Bob's real ids ----------------
    bob_ids = {"contact_id": [c["id"] for c in bob_contacts], "import_id": [bob_import_id],
               "suggestion_id": [bob_suggestion], "relay_id": [bob_relay_id]}
    assert set(bob_ids) == set(ID_KINDS)
    shared = {email_of(a1).lower(), message_id}  # in both books / campaign-wide: not Bob's secret
    bob_secrets = {bob_id, bob_import_id, bob_suggestion, bob_relay_id, "Bob's private note 7e2a",
                   "Rejected Secret", "rejected-secret-at-nowhere", "+33611223344"}
    for c in bob_contacts:
        bob_secrets |= {c["id"], c["name"], *c["emails"]}
    bob_secrets = {s for s in bob_secrets if s.lower() not in shared}

    def bob_view() -> dict[str, Any]:
        return book_snapshot(contacts, bob, bob_ids["contact_id"], bob_ids["import_id"], bob_ids["relay_id"])

    def alice_view() -> dict[str, Any]:
        return book_snapshot(contacts, alice, [a1["id"], a2["id"]], [], [alice_relay_id])

    def stored() -> dict[str, int]:
        return {model.__name__: count_rows(contacts, model)
                for model in (Volunteer, Contact, ConsentEvent, ImportJob, Relay, SentItem, Suppression)}

    def jobs() -> int:
        return len(stream_payloads(nats_url, DISPATCH_JOBS_STREAM.name))

    bob_before, alice_before, stored_before, jobs_before = bob_view(), alice_view(), stored(), jobs()
    assert "Louise Garnier" in json.dumps(bob_before, ensure_ascii=False)  # the snapshot holds the book

    def assert_no_trace(r, where: str, sent: str) -> None:
        for secret in bob_secrets:
            if secret.lower() in sent.lower():
                continue  # the caller gave it: echoing it back reveals nothing
            assert secret.lower() not in r.text.lower(), f"{where} leaked {secret!r}: {r.text[:300]}"

    spec = contacts.get("/openapi.json").json()
    walked: set[tuple[str, str]] = set()
    for method, path, op in operations(contacts):
        if (method, path) in PUBLIC_OPS or path.startswith("/admin/"):
            continue
        params = [p for p in path_params(path) if p not in OWN_PARAMS]
        unknown = set(params) - set(ID_KINDS)
        assert not unknown, (f"{method} {path} takes {unknown}: teach the isolation walk to make one "
                             "that belongs to another volunteer")
        id_fields = {p for p in schema_properties(spec, op) if re.search(r"_ids?$", p)}
        # message_id (invite) names a campaign message: campaign-wide, no one's own.
        unknown = id_fields - {"contact_ids", "message_id"}
        assert not unknown, f"{method} {path} takes {unknown} in its body: teach the isolation walk"
        if not params and "contact_ids" not in id_fields:
            continue
        # (url, body) with Bob's ids; the same with ids that exist nowhere; Bob's ids used.
        calls: list[tuple[str, dict, str, dict, list[str]]] = []
        if params:
            kwargs = example_body(method, path, {}) if "requestBody" in op else {}
            for kind in params:
                calls += [(fill(path, {kind: value}), kwargs, fill(path, {kind: DUMMY_ID}), kwargs, [value])
                          for value in bob_ids[kind]]
        else:  # ids in the body: Bob's alone, and Bob's mixed with Alice's own
            theirs = bob_ids["contact_id"]
            for ids in (theirs, [a1["id"], *theirs]):
                dummies = [DUMMY_ID if i in theirs else i for i in ids]
                calls.append((path, example_body(method, path, {"contact_ids": ids}),
                              path, example_body(method, path, {"contact_ids": dummies}), theirs))
        for url, body, dummy_url, dummy_body, used_ids in calls:
            where = f"{method} {url} as Alice"
            r = contacts.request(method, url, headers=alice, **body)
            assert r.status_code in (403, 404), f"{where}: {r.status_code} {r.text[:300]}"
            assert_no_trace(r, where, url + json.dumps(body.get("json", {})))
            # As if it did not exist: the answer to an id that exists nowhere.
            d = contacts.request(method, dummy_url, headers=alice, **dummy_body)
            answer = r.text
            for value in used_ids:
                answer = answer.replace(value, DUMMY_ID)
            assert (r.status_code, answer) == (d.status_code, d.text), (
                f"{where} is told apart from an unknown id: {r.status_code} {r.text} vs {d.status_code} {d.text}")
        walked.add((method, path))

    assert {("GET", "/contacts/{contact_id}"), ("PATCH", "/contacts/{contact_id}"),
            ("DELETE", "/contacts/{contact_id}"), ("GET", "/contacts/{contact_id}/export"),
            ("PUT", "/contacts/{contact_id}/consent/email"), ("POST", "/contacts/{contact_id}/invite"),
            ("POST", "/contacts/bulk-tag"), ("GET", "/imports/{import_id}"),
            ("GET", "/imports/{import_id}/rows"), ("POST", "/inbox/{suggestion_id}/relay"),
            ("GET", "/relays/{relay_id}")} <= walked, walked

    # Alice's own routes without ids hold nothing of Bob's, searches included.
    reads = [path for method, path, _ in operations(contacts)
             if method == "GET" and not path_params(path) and (method, path) not in PUBLIC_OPS
             and not path.startswith("/admin/")]
    queries = [{}] + [{"q": word} for c in bob_contacts for word in c["name"].split()] + [
        {"format": "csv"}, {"interest": "seniors"}, {"interest": "housing"}, {"tag": "voisins"},
        {"channel": "phone"}, {"consent": "unknown"}]
    for path in reads:
        for query in queries:
            r = contacts.get(path, headers=alice, params=query)
            if r.status_code == 422:
                continue  # a query that route does not take
            assert r.status_code == 200, f"GET {path} {query}: {r.status_code} {r.text[:200]}"
            assert_no_trace(r, f"GET {path} {query} as Alice", "")
    assert [c["id"] for c in items(contacts, alice, q="Louis")] == []
    assert [c["id"] for c in items(contacts, alice, q="Camille")] == [a1["id"]]

    # Neither staff nor provisioning tokens open any volunteer route, and a
    # volunteer's token does not provision.
    role_tokens = {"staff token": bearer(STAFF_TOKEN), "provisioning token": bearer(PROVISIONING_TOKEN)}
    volunteer_tokens = {"alice's token": alice, "bob's token": bob, "staff token": bearer(STAFF_TOKEN)}
    locked = set()
    one_of_bob = {kind: values[0] for kind, values in bob_ids.items()}
    for method, path, op in operations(contacts):
        if (method, path) in PUBLIC_OPS:
            continue
        if path.startswith("/admin/"):
            assert_locked(contacts, method, path, op, volunteer_tokens, one_of_bob)
        else:
            assert_locked(contacts, method, path, op, role_tokens, one_of_bob, secrets=tuple(bob_secrets))
        locked.add(path)
    assert {"/me", "/me/profile", "/contacts", "/contacts/{contact_id}", "/inbox", "/imports",
            "/inbox/{suggestion_id}/relay", "/relays/{relay_id}", "/admin/invites", "/admin/volunteers"} <= locked

    # Bob's space, and Alice's own, are exactly as they were.
    bob_after = bob_view()
    for path, before in bob_before.items():
        assert bob_after[path] == before, f"Bob's {path} changed during the walk"
    alice_after = alice_view()
    for path, before in alice_before.items():
        assert alice_after[path] == before, f"Alice's {path} changed during the walk"
    assert contacts.get(f"/contacts/{b4['id']}", headers=bob).json()["consent"]["email"]["state"] == "unknown"
    assert stored() == stored_before
    assert jobs() == jobs_before, "an email job was queued during the walk"


def test_public_links_refuse_forged_and_other_purpose_tokens(contacts: TestClient, nats_url: str):
    """/auth/redeem, /u/{token} and /consent/{token} take no bearer token: the
    code or the signed link is the proof. Forged, tampered, expired, signed
    with another key or for another purpose, or a token of another kind: a
    400 that names no one and changes nothing. The real links still work."""
    bob_id, bob = new_volunteer(contacts, "Bob Leroy", "bob@benevoles.example")
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    b1 = add_contact(contacts, bob, "Louis Petit", "louis.petit@exemple.fr", ["education"])
    b2 = add_contact(contacts, bob, "Zoé Lambert", "zoe.lambert@exemple.fr", ["housing"], consent="invited")
    invitation = next(job for job in (opened_job(j) for _, j in stream_payloads(nats_url, DISPATCH_JOBS_STREAM.name))
                      if job["kind"] == "invitation" and job["recipient_email"] == email_of(b2))
    consent_token = re.search(r"/consent/([\w.-]+)", invitation["body_text"]).group(1)
    unsubscribe_token = invitation["unsubscribe_url"].rsplit("/u/", 1)[1]

    provisioning = bearer(PROVISIONING_TOKEN)
    used = contacts.post("/admin/invites", headers=provisioning,
                         json={"display_name": "Yann", "email": "yann@benevoles.example"}).json()["code"]
    assert contacts.post("/auth/redeem", json={"code": used}).status_code == 200
    unused = contacts.post("/admin/invites", headers=provisioning,
                           json={"display_name": "Zoé", "email": "zoe@benevoles.example"}).json()["code"]

    def tampered(token: str, **changes: str) -> str:
        body, _, mac = token.partition(".")
        payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        new = base64.urlsafe_b64encode(json.dumps({**payload, **changes}, separators=(",", ":"),
                                                  sort_keys=True).encode()).rstrip(b"=").decode()
        return f"{new}.{mac}"

    def payload_of(token: str) -> dict[str, Any]:
        body = token.partition(".")[0]
        return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))

    links = contacts.app.state.keys.links
    other_key = LinkSigner(b"o" * 32)
    unsub_payload, consent_payload = payload_of(unsubscribe_token), payload_of(consent_token)
    assert unsub_payload["c"] == consent_payload["c"] == b2["id"]
    bob_token = bob["Authorization"].split()[1]
    not_a_link = {
        "garbage": "not-a-link", "dotted garbage": "a.b", "bob's API token": bob_token,
        "provisioning token": PROVISIONING_TOKEN, "an invite code": unused,
    }
    bad_unsubscribe = {
        **not_a_link,
        "consent link (other purpose)": consent_token,
        "tampered (other contact)": tampered(unsubscribe_token, c=b1["id"]),
        "mac stripped": unsubscribe_token.partition(".")[0],
        "signed with another key": other_key.sign("unsubscribe", {**unsub_payload, "c": b1["id"]}),
        "expired": links.sign("unsubscribe", {**unsub_payload, "c": b1["id"]}, ttl_seconds=-10),
        "invitation purpose": links.sign("invitation", {**unsub_payload, "c": b1["id"]}),
    }
    bad_consent = {
        **not_a_link,
        "unsubscribe link (other purpose)": unsubscribe_token,
        "tampered (other contact)": tampered(consent_token, c=b1["id"]),
        "tampered (other volunteer)": tampered(consent_token, v=bob_id[::-1]),
        "signed with another key": other_key.sign("consent", {**consent_payload, "c": b1["id"]}),
        "expired": links.sign("consent", {**consent_payload}, ttl_seconds=-10),
    }
    secrets = (b1["name"], email_of(b1), b1["id"], b2["name"], email_of(b2), b2["id"], bob_id, "Bob Leroy")
    before = book_snapshot(contacts, bob, [b1["id"], b2["id"]], [], [])
    volunteers_before = count_rows(contacts, Volunteer)

    def assert_refused(r, where: str) -> None:
        assert r.status_code == 400, f"{where}: {r.status_code} {r.text[:300]}"
        assert r.headers["content-type"].startswith("text/html"), where
        assert "pas valide" in r.text and "not valid" in r.text, f"{where}: {r.text[:300]}"
        for secret in secrets:
            assert secret.lower() not in r.text.lower(), f"{where} leaked {secret!r}"

    for how, token in bad_unsubscribe.items():
        assert_refused(contacts.get(f"/u/{token}"), f"GET /u/ with {how}")
        assert_refused(contacts.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}),
                       f"POST /u/ with {how}")
    for how, token in bad_consent.items():
        assert_refused(contacts.get(f"/consent/{token}"), f"GET /consent/ with {how}")
        for answer in ("yes", "no"):
            assert_refused(contacts.post(f"/consent/{token}", data={"answer": answer}),
                           f"POST /consent/ answer={answer} with {how}")

    bad_codes = {
        "random": "r" * 32, "used": used, "bob's API token": bob_token, "provisioning token": PROVISIONING_TOKEN,
        "consent link": consent_token, "unsubscribe link": unsubscribe_token, "code with a typo": unused[:-1] + "?",
    }
    for how, code in bad_codes.items():
        r = contacts.post("/auth/redeem", json={"code": code})
        if r.status_code == 422:  # not even the shape of a code (too long)
            assert loc_of(r) == [("body", "code")], f"redeem with {how}: {r.text}"
        else:
            assert r.status_code == 400, f"redeem with {how}: {r.status_code} {r.text}"
            assert r.json() == {"detail": "code: this invitation is unknown, used or expired"}, r.text
        assert "token" not in r.json() and "volunteer_id" not in r.text, f"redeem with {how}: {r.text}"
        for secret in secrets:
            assert secret.lower() not in r.text.lower(), f"redeem with {how} leaked {secret!r}"
    assert count_rows(contacts, Volunteer) == volunteers_before, "a refused code created a volunteer"

    assert book_snapshot(contacts, bob, [b1["id"], b2["id"]], [], []) == before
    assert count_rows(contacts, Suppression) == 0
    assert stream_payloads(nats_url, SUPPRESSIONS_STREAM.name) == []

    # The real links and code work: the refusals were not for a trivial reason.
    for path in (f"/u/{unsubscribe_token}", f"/consent/{consent_token}"):
        r = contacts.get(path)
        assert r.status_code == 200, f"{path}: {r.text[:200]}"
        for secret in secrets:
            assert secret.lower() not in r.text.lower(), f"GET {path} shows {secret!r}"
    r = contacts.post("/auth/redeem", json={"code": unused})
    assert r.status_code == 200 and contacts.get("/me", headers=bearer(r.json()["token"])).status_code == 200
    # The alice token is still hers alone (nothing above logged anyone out).
    assert contacts.get("/me", headers=alice).status_code == 200


# -- 3. bad bodies ----------------------------------------------------------------------------


def test_bad_bodies_get_a_422_naming_the_field(feed: TestClient, contacts: TestClient):
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    staff = bearer(STAFF_TOKEN)
    good_contact = {"name": "Camille Durand", "emails": ["camille.durand@exemple.fr"], "interests": ["education"]}

    cases = [
        (contacts, "/contacts", alice, {**good_contact, "emails": ["not-an-email"]}, ("body", "emails", 0)),
        (contacts, "/contacts", alice, {**good_contact, "phones": ["12"]}, ("body", "phones", 0)),
        (contacts, "/contacts", alice, {**good_contact, "interests": ["Bad Interest!"]}, ("body", "interests", 0)),
        (contacts, "/contacts", alice, {**good_contact, "nickname": "Cam"}, ("body", "nickname")),
        (contacts, "/contacts", alice, {**good_contact, "consent": "maybe"}, ("body", "consent")),
        (contacts, "/contacts", alice, {**good_contact, "name": "   "}, ("body", "name")),
        (contacts, "/contacts", alice, {**good_contact, "emails": [], "phones": []}, ("body", "emails")),
        (contacts, "/contacts", alice, {**good_contact, "consent": "confirmed"}, ("body", "consent_proof")),
        (contacts, "/contacts", alice, {**good_contact, "consent": "confirmed", "consent_proof": "  "},
         ("body", "consent_proof")),
        (feed, "/messages", staff, {k: v for k, v in message_draft().items() if k != "variants"}, ("body", "variants")),
        (feed, "/messages", staff, {**message_draft(), "priority": "high"}, ("body", "priority")),
        (feed, "/messages", staff, {**message_draft(), "interests": ["Bad Interest!"]}, ("body", "interests", 0)),
        (feed, "/messages", staff,
         {**message_draft(), "variants": {"email": {"subject": "S", "body": "B", "html": "<p>"}}},
         ("body", "variants", "email", "html")),
        (contacts, "/admin/volunteers", bearer(PROVISIONING_TOKEN), {"display_name": "X", "email": "nope"},
         ("body", "email")),
        (contacts, "/admin/invites", bearer(PROVISIONING_TOKEN), {"display_name": "X", "email": "nope"},
         ("body", "email")),
        (contacts, "/auth/redeem", {}, {"code": "short"}, ("body", "code")),
    ]
    for client, url, auth, body, loc in cases:
        r = client.post(url, headers=auth, json=body)
        assert r.status_code == 422, f"{url} {body}: {r.status_code} {r.text}"
        assert loc in loc_of(r), f"{url} {body}: {loc} not in {loc_of(r)}"
        assert loc[1] in r.text

    r = contacts.put("/me/profile", headers=alice, json={"shared_interests": ["Bad Interest!"]})
    assert r.status_code == 422 and ("body", "shared_interests", 0) in loc_of(r), r.text

    # Nothing was stored by the refused requests.
    page = contacts.get("/contacts", headers=alice).json()
    assert page == {"items": [], "next_cursor": None, "total": 0}
    assert feed.get("/messages", headers=staff).json() == []
    assert count_rows(contacts, Volunteer) == 1

    # A duplicate address in the same book is a 409, whatever the case of its domain.
    add_contact(contacts, alice, "Jean Dupont", "jean.dupont@exemple.fr", ["education"])
    for same in ("jean.dupont@EXEMPLE.FR", "jean.dupont@Exemple.Fr"):
        r = contacts.post("/contacts", headers=alice, json={"name": "Jean D.", "emails": [same]})
        assert r.status_code == 409, f"{same}: {r.status_code} {r.text}"
        assert "email" in r.json()["detail"]
    assert len(items(contacts, alice)) == 1


def test_unknown_fields_are_refused_on_every_body(contacts: TestClient):
    """An unknown field is a 422 naming it, on every body of the spec (a
    valid body plus one misspelt field): a typo must not be silently
    dropped, and nothing is stored. The import's column mapping, a JSON
    body inside the form, is held to the same rule.

    The mapping once went through a plain dataclass, for which pydantic
    drops unknown keys: ``{"emial": ["Courriel"]}`` started the import (202)
    instead of naming the typo."""
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    mine = add_contact(contacts, alice, "Camille Durand", "camille.durand@exemple.fr", ["education"],
                       consent="unknown")
    auth_for = {"/admin/": bearer(PROVISIONING_TOKEN), "/auth/": {}}
    failures, tried = [], set()
    for method, path, op in operations(contacts):
        if body_kind(op) != "application/json":
            continue
        body = example_body(method, path, {"contact_ids": [mine["id"]]})["json"]
        field = "unexpected_fieldx"
        auth = next((a for prefix, a in auth_for.items() if path.startswith(prefix)), alice)
        r = contacts.request(method, fill(path, {"contact_id": mine["id"]}), headers=auth,
                             json={**body, field: ["x"]})
        tried.add((method, path))
        if r.status_code != 422 or ("body", field) not in loc_of(r):
            failures.append(f"{method} {path} with unknown field {field!r}: {r.status_code} {r.text[:120]}")
    assert {("POST", "/admin/volunteers"), ("PUT", "/me/profile"), ("POST", "/contacts"),
            ("PATCH", "/contacts/{contact_id}"), ("POST", "/contacts/bulk-tag"), ("POST", "/auth/redeem"),
            ("PUT", "/contacts/{contact_id}/consent/email"), ("POST", "/contacts/{contact_id}/invite"),
            ("POST", "/admin/invites")} <= tried

    csv_file = {"file": ("people.csv", b"Nom;Courriel\nAna Dupont;ana@exemple.fr\n", "text/csv")}
    r = contacts.post("/imports", headers=alice, files=csv_file,
                      data={"mapping": json.dumps({"display_name": "Nom", "emial": ["Courriel"]})})
    if r.status_code != 422 or "emial" not in r.text:
        failures.append(f"POST /imports with mapping field 'emial': {r.status_code} {r.text[:160]}")
    assert not failures, "unknown fields silently accepted:\n" + "\n".join(failures)
    assert contacts.get(f"/contacts/{mine['id']}", headers=alice).json() == mine
    assert count_rows(contacts, Volunteer) == 1
    assert len(items(contacts, alice)) == 1


# -- 4. operations routes ---------------------------------------------------------------------


def test_health_readiness_and_metrics(feed: TestClient, contacts: TestClient, matcher: TestClient,
                                      dispatch: TestClient, db_url: str):
    dialect = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    expected_checks = {
        "feed": {"nats", "database"},
        "contacts": {"nats", "database"},
        "matcher": {"nats", "index", "taxonomy", "queue"},
        "dispatch-email": {"nats", "smtp", "ledger", "suppressions", "withdrawals"},
    }
    for service, client in {"feed": feed, "contacts": contacts, "matcher": matcher, "dispatch-email": dispatch}.items():
        r = client.get("/healthz")
        assert r.status_code == 200 and r.json() == {"status": "ok"}, r.text

        r = client.get("/readyz")
        assert r.status_code == 200, f"{service}: {r.text}"
        body = r.json()
        assert body["ready"] is True
        assert set(body["checks"]) == expected_checks[service], body
        assert all(check["ok"] for check in body["checks"].values()), body
        assert body["checks"]["nats"]["detail"] == "connected"
        if "database" in body["checks"]:
            assert body["checks"]["database"]["detail"] == dialect

        r = client.get("/asyncapi.json")  # public, like /openapi.json
        assert r.status_code == 200 and r.json()["asyncapi"] == "3.0.0", r.text[:200]

        r = client.get("/metrics")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        assert "# TYPE maillage_http_requests_total counter" in r.text
        readyz_count = sum(
            value for labels, value in samples(r.text, "maillage_http_requests_total")
            if labels == {"service": service, "route": "/readyz", "status": "200"}
        )
        assert readyz_count >= 1, f"{service}: no /readyz sample in /metrics"
        # Routes are labelled by template, never by a concrete id.
        assert DUMMY_ID not in r.text


def test_readiness_follows_nats(tmp_path: Path, nats_server: NatsServer):
    """/readyz turns 503 (nats not ok, database still ok) while NATS is
    down, and 200 again once it is back; /healthz stays 200 throughout."""
    app = build_apps(nats_server.url, f"sqlite:///{tmp_path / 'feed.db'}")["feed"]
    restarted: NatsServer | None = None
    try:
        with TestClient(app) as feed:
            assert feed.get("/readyz").status_code == 200
            nats_server.process.terminate()
            nats_server.process.wait(10)
            down = poll(lambda: feed.get("/readyz"), lambda r: r.status_code == 503, what="readyz to fail")
            assert down.json()["ready"] is False
            assert down.json()["checks"]["nats"]["ok"] is False
            assert down.json()["checks"]["database"]["ok"] is True
            assert feed.get("/healthz").status_code == 200

            # Same port, same JetStream store: the streams are still there.
            restarted = start_nats(tmp_path / "jetstream", nats_server.port)
            up = poll(lambda: feed.get("/readyz"), lambda r: r.status_code == 200, timeout=20,
                      what="readyz to recover")
            assert up.json()["checks"]["nats"] == {"ok": True, "detail": "connected"}
    finally:
        if restarted is not None:
            restarted.process.terminate()
            restarted.process.wait(10)


# -- 5. idempotent publishing -----------------------------------------------------------------


def test_idempotency_key_makes_a_retry_the_same_message(feed: TestClient):
    staff = bearer(STAFF_TOKEN)
    first = feed.post("/messages", headers={**staff, "Idempotency-Key": "retry-42"}, json=message_draft())
    assert first.status_code == 201, first.text
    again = feed.post("/messages", headers={**staff, "Idempotency-Key": "retry-42"}, json=message_draft())
    assert again.status_code in (200, 201), again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["published_at"] == first.json()["published_at"]

    listed = feed.get("/messages", headers=staff).json()
    assert [m["id"] for m in listed] == [first.json()["id"]]
    assert feed.get(f"/messages/{first.json()['id']}", headers=staff).status_code == 200

    other = feed.post("/messages", headers={**staff, "Idempotency-Key": "another"}, json=message_draft())
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert len(feed.get("/messages", headers=staff).json()) == 2


def test_concurrent_retries_with_one_idempotency_key_make_one_message(feed: TestClient):
    """A client retrying after a timeout races its own first request: every
    attempt must get the same message, none a 500.

    Checking for the key and then inserting is not enough: the loser of the
    race meets the unique constraint, and must read the winner's message
    back instead of answering a 500."""
    rounds = 3  # the race is timing-dependent: a few keys, each sent from many threads
    for n in range(rounds):
        staff = {**bearer(STAFF_TOKEN), "Idempotency-Key": f"raced-key-{n}"}
        outcomes = concurrently(8, lambda staff=staff: feed.post("/messages", headers=staff, json=message_draft()))
        listed = feed.get("/messages", headers=bearer(STAFF_TOKEN)).json()
        assert len(listed) == n + 1, listed
        summary = [(status, body.get("id") if isinstance(body, dict) else body) for status, body in outcomes]
        assert all(status in (200, 201) for status, _ in outcomes), f"some retries failed: {summary}"
        assert {body["id"] for _, body in outcomes} == {listed[0]["id"]}, summary


def test_a_double_click_on_relay_is_one_relay(feed: TestClient, contacts: TestClient, matcher: TestClient):
    """Two clicks at once on "relay" are the same relay, both answered.

    The losing click's ledger insert is rolled back; it must still answer
    (no row read from an expired session, no 500) and not count its own
    recipient as ``already_received``."""
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    add_contact(contacts, alice, "Camille Durand", "camille.durand@exemple.fr", ["education"])
    poll(lambda: matcher.get("/readyz").json()["checks"]["index"]["detail"], lambda d: d == "1 profiles",
         what="the matcher to index the profile")
    rounds = 3  # the race is timing-dependent: a few suggestions, each clicked from many threads
    for n in range(rounds):
        draft = message_draft(title=f"Message {n}")
        assert feed.post("/messages", headers=bearer(STAFF_TOKEN), json=draft).status_code == 201
    inbox = poll(lambda: contacts.get("/inbox", headers=alice).json(), lambda items: len(items) == rounds,
                 what="the suggestions")

    def relay_is_possible() -> bool:  # 409 until contacts has received the messages themselves
        with Session(contacts.app.state.engine) as session:
            return all(session.get(CampaignMessage, item["message_id"]) for item in inbox)

    poll(relay_is_possible, bool, what="contacts to receive the messages")
    for item in inbox:
        outcomes = concurrently(8, lambda item=item: contacts.post(f"/inbox/{item['suggestion_id']}/relay",
                                                                   headers=alice))
        summary = [(status, body.get("relay_id") if isinstance(body, dict) else body) for status, body in outcomes]
        assert all(status == 200 for status, _ in outcomes), f"some clicks failed: {summary}"
        assert len({body["relay_id"] for _, body in outcomes}) == 1, summary
        assert all(body["channels"]["email"]["queued"] == 1 for _, body in outcomes)


# -- 6. the profile: counts of confirmed contacts, only what is shared ------------------------


def last_published_profile(nats_url: str, volunteer_id: str) -> dict[str, Any]:
    """What contacts last told the campaign about this volunteer, read back
    from JetStream."""

    async def fetch() -> dict[str, Any]:
        nc = await nats.connect(nats_url)
        try:
            msg = await nc.jetstream().get_last_msg(PROFILE_UPDATED.stream.name,
                                                    PROFILE_UPDATED.subject(volunteer_id))
            return json.loads(msg.data)
        finally:
            await nc.close()

    return asyncio.run(fetch())


def test_profile_counts_confirmed_contacts_of_shared_interests(contacts: TestClient, nats_url: str):
    vol_id, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    book = [
        ("Camille Durand", "camille.durand@exemple.fr", ["education", "transport"], "confirmed"),
        ("Louis Petit", "louis.petit@exemple.fr", ["seniors"], "confirmed"),
        ("Chloé Bernard", "chloe.bernard@exemple.fr", ["education"], "unknown"),
        ("Inès Moreau", "ines.moreau@exemple.fr", ["education"], "confirmed"),
        ("Paul Roux", "paul.roux@exemple.fr", ["transport", "housing"], "withdrawn"),
        ("Zoé Blanc", "zoe.blanc@exemple.fr", ["housing"], "invited"),
    ]
    places = {"Camille Durand": {"region": "Auvergne-Rhône-Alpes", "locale": "fr-FR"},
              "Chloé Bernard": {"region": "Auvergne-Rhône-Alpes", "locale": "fr-FR"}}
    added = [add_contact(contacts, alice, *entry, **places.get(entry[0], {})) for entry in book]

    def assert_no_identity(text: str) -> None:
        for contact in added:
            for secret in (contact["name"], email_of(contact), contact["id"], contact["name"].split()[0]):
                assert secret.lower() not in text.lower(), f"profile leaks {secret!r}: {text}"

    everything = {"education": {"email": 2}, "seniors": {"email": 1}, "transport": {"email": 1}}
    r = contacts.get("/me/profile", headers=alice)
    assert r.status_code == 200, r.text
    profile = r.json()
    assert profile["volunteer_id"] == vol_id
    assert profile["audience"] == everything  # housing: no confirmed contact, so absent
    assert set(profile) == {"event_id", "occurred_at", "schema_version", "volunteer_id", "audience",
                            "regions", "locales", "auto_relay_interests"}  # the last: hers only, never published
    assert profile["auto_relay_interests"] == []  # off by default
    # Places count confirmed contacts too (Chloé, not confirmed, is not counted).
    assert (profile["regions"], profile["locales"]) == ({"Auvergne-Rhône-Alpes": 1}, {"fr-FR": 1})
    assert_no_identity(r.text)
    published = last_published_profile(nats_url, vol_id)
    assert published["audience"] == everything
    assert_no_identity(json.dumps(published, ensure_ascii=False))

    # Sharing only some interests restricts what is shown and published.
    r = contacts.put("/me/profile", headers=alice, json={"shared_interests": ["education", "housing"]})
    assert r.status_code == 200, r.text
    assert r.json()["audience"] == {"education": {"email": 2}}
    assert contacts.get("/me/profile", headers=alice).json()["audience"] == {"education": {"email": 2}}
    assert contacts.get("/me", headers=alice).json()["shared_interests"] == ["education", "housing"]
    assert last_published_profile(nats_url, vol_id)["audience"] == {"education": {"email": 2}}
    assert_no_identity(r.text)

    # A later change of the book keeps to the chosen interests.
    add_contact(contacts, alice, "Hugo Lefèvre", "hugo.lefevre@exemple.fr", ["seniors", "education"])
    assert contacts.get("/me/profile", headers=alice).json()["audience"] == {"education": {"email": 3}}
    assert last_published_profile(nats_url, vol_id)["audience"] == {"education": {"email": 3}}

    # Sharing nothing, then everything again.
    r = contacts.put("/me/profile", headers=alice, json={"shared_interests": []})
    assert r.status_code == 200 and r.json()["audience"] == {}, r.text
    r = contacts.put("/me/profile", headers=alice, json={"shared_interests": None})
    assert r.status_code == 200, r.text
    assert r.json()["audience"] == {"education": {"email": 3}, "seniors": {"email": 2}, "transport": {"email": 1}}
    assert contacts.get("/me", headers=alice).json()["shared_interests"] is None
