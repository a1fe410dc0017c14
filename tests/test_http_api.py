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

Tests whose docstring says "BUG (reported)" state the right behaviour and
fail until that bug in the services is fixed; they are not to be weakened.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from services.contacts.store import (
    CampaignMessage,
    Contact,
    ConsentEvent,
    ImportJob,
    Relay,
    SentItem,
    Suppression,
    Volunteer,
)
from shared.catalogue import DISPATCH_JOBS_STREAM, PROFILE_UPDATED, SUPPRESSIONS_STREAM
from shared.links import LinkSigner
from tests.apps import PROVISIONING_TOKEN, STAFF_TOKEN, build_apps
from tests.conftest import NatsServer, start_nats
from tests.streams import stream_payloads
from tests.transit_keys import opened_job
from tests.volunteer_accounts import new_volunteer as invited_and_redeemed
from tests.waiting import poll


# Public by design: probes, metrics, and the API documents (OpenAPI, AsyncAPI),
# which describe the interfaces and hold no data.
OPS_PATHS = {
    "/healthz", "/readyz", "/metrics", "/asyncapi.json",
    "/docs", "/docs/oauth2-redirect", "/openapi.json", "/redoc",
}
# Contacts' routes that need no bearer token because they carry their own
# signed proof (an invite code, a signed link from an email), and the one
# that mails a sign-in link to an account's own address (it answers everyone
# alike). Exactly these: any other route must answer 401 without a token.
PUBLIC_OPS = {
    ("POST", "/auth/redeem"), ("POST", "/auth/recover"),
    ("GET", "/u/{token}"), ("POST", "/u/{token}"),
    ("GET", "/consent/{token}"), ("POST", "/consent/{token}"),
}
# The kinds of id a volunteer route may take in its path; the isolation walk
# knows how to make each one belong to another volunteer.
ID_KINDS = ("contact_id", "import_id", "suggestion_id", "relay_id")
UNAUTHORIZED = {"detail": "missing or invalid bearer token"}
DUMMY_ID = "0123456789abcdef0123456789abcdef"
# Not a token any service knows, yet the shape of one.
FORGED_TOKEN = "vol_" + "A" * 43
PROOF = "said yes at the market, 12/11"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# Authorization headers no route may accept: none, malformed, unknown, and
# the tokens of the *other* services / roles are added per test.
BAD_AUTHORIZATIONS: dict[str, dict[str, str]] = {
    "no header": {},
    "empty bearer": {"Authorization": "Bearer "},
    "blank bearer": {"Authorization": "Bearer    "},
    "wrong token": bearer("wrong-token"),
    "forged token": bearer(FORGED_TOKEN),
    "basic scheme": {"Authorization": f"Basic {STAFF_TOKEN}"},
    "token without scheme": {"Authorization": STAFF_TOKEN},
}


def concurrently(n: int, call: Callable[[], Any]) -> list[tuple[int | str, Any]]:
    """Run ``call`` from ``n`` threads released together; each outcome is
    (status, json) or ("exception", its type name) for a server error
    TestClient re-raised."""
    barrier = threading.Barrier(n)
    outcomes: list[tuple[int | str, Any]] = []

    def one() -> None:
        barrier.wait()
        try:
            r = call()
            outcomes.append((r.status_code, r.json()))
        except Exception as exc:  # a 500: TestClient raises the server's exception
            outcomes.append(("exception", type(exc).__name__))

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return outcomes


# -- the services, with their lifespan running ------------------------------------------


def running(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        assert client.app is app
        yield client


@pytest.fixture
def feed(nats_url: str, db_url: str) -> Iterator[TestClient]:
    yield from running(build_apps(nats_url, db_url)["feed"])


@pytest.fixture
def contacts(nats_url: str, db_url: str) -> Iterator[TestClient]:
    yield from running(build_apps(nats_url, db_url)["contacts"])


@pytest.fixture
def matcher(nats_url: str) -> Iterator[TestClient]:
    yield from running(build_apps(nats_url)["matcher"])


@pytest.fixture
def dispatch(nats_url: str) -> Iterator[TestClient]:
    yield from running(build_apps(nats_url)["dispatch-email"])


# -- helpers -------------------------------------------------------------------------------


def new_volunteer(contacts: TestClient, name: str, email: str) -> tuple[str, dict[str, str]]:
    made = invited_and_redeemed(contacts, PROVISIONING_TOKEN, name, email)
    return made.volunteer_id, made.auth


def add_contact(contacts: TestClient, auth: dict[str, str], name: str, email: str,
                interests: list[str], consent: str = "confirmed", **fields: Any) -> dict[str, Any]:
    """A contact in ``consent`` state, reached the way the API allows:
    confirmed with a proof, invited through the invitation route."""
    body: dict[str, Any] = {"name": name, "emails": [email], "interests": interests, **fields}
    if consent == "confirmed":
        body |= {"consent": "confirmed", "consent_proof": PROOF}
    elif consent == "withdrawn":
        body["consent"] = "withdrawn"
    r = contacts.post("/contacts", headers=auth, json=body)
    assert r.status_code == 201, r.text
    contact = r.json()
    if consent == "invited":
        r = contacts.post(f"/contacts/{contact['id']}/invite", headers=auth, json={})
        assert r.status_code == 200, r.text
        contact = r.json()
    assert contact["consent"]["email"]["state"] == consent, contact
    return contact


def email_of(contact: dict[str, Any]) -> str:
    return contact["emails"][0]


def items(contacts: TestClient, auth: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    """The contacts of one page of GET /contacts."""
    r = contacts.get("/contacts", headers=auth, params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


GOOGLE_HEADER = "Name,Given Name,Family Name,Group Membership,E-mail 1 - Type,E-mail 1 - Value,Phone 1 - Value\n"


def google_csv(*rows: str) -> bytes:
    return (GOOGLE_HEADER + "".join(f"{row}\n" for row in rows)).encode()


def upload(contacts: TestClient, auth: dict[str, str], content: bytes, filename: str = "contacts.csv",
           **form: str):
    return contacts.post("/imports", headers=auth, files={"file": (filename, content, "text/csv")}, data=form)


def finished_import(contacts: TestClient, auth: dict[str, str], import_id: str) -> dict[str, Any]:
    return poll(lambda: contacts.get(f"/imports/{import_id}", headers=auth).json(),
                lambda s: s.get("status") != "running", what=f"import {import_id} to finish")


def message_draft(title: str = "Nos écoles méritent mieux", interests: list[str] | None = None) -> dict[str, Any]:
    return {
        "title": title,
        "body": "Réunion publique le 12 décembre.",
        "interests": ["education"] if interests is None else interests,
        "variants": {"email": {"subject": "Réunion sur nos écoles", "body": "Rendez-vous à 19 h."}},
    }


def operations(client: TestClient) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path template, operation) for every route of the app's
    OpenAPI spec but the operations routes; and a check that the spec does
    not hide a route of the app (``include_in_schema=False``)."""
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    ops = [
        (method.upper(), path, op)
        for path, methods in paths.items()
        if path not in OPS_PATHS
        for method, op in methods.items()
    ]
    app: FastAPI = client.app
    in_spec = {(m, p) for m, p, _ in ops}
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path not in OPS_PATHS:
            for method in route.methods - {"HEAD", "OPTIONS"}:
                assert (method, route.path) in in_spec, f"{method} {route.path} is missing from /openapi.json"
    return ops


def path_params(path: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", path)


# Path parameters that name one of the caller's own things, not an id that
# could be another volunteer's: /me/networks/{network} is always the caller's.
OWN_PARAMS = {"network": "x"}


def fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: ids.get(m.group(1), OWN_PARAMS.get(m.group(1), DUMMY_ID)), path)


def body_kind(op: dict[str, Any]) -> str | None:
    content = op.get("requestBody", {}).get("content", {})
    for kind in ("application/json", "multipart/form-data", "application/x-www-form-urlencoded"):
        if kind in content:
            return kind
    assert not content, f"a body of an unknown type: {sorted(content)}"
    return None


SMALL_CSV = google_csv("Nina Secret,Nina,Secret,,,nina.secret@exemple.fr,")


def request_variants(path: str, op: dict[str, Any], ids: dict[str, str]) -> list[dict[str, Any]]:
    """Ways to call one operation: plain (path params filled, an empty or a
    real body), then with every query/header parameter invalid and a body
    full of unknown fields. Auth must answer first in both cases."""
    url = fill(path, ids)
    kind = body_kind(op)
    plain: dict[str, Any] = {"url": url}
    invalid: dict[str, Any] = {"url": url, "params": {}, "headers": {}}
    for param in op.get("parameters", []):
        if param["in"] == "query":
            invalid["params"][param["name"]] = "x" * 1000  # not an int, too long for a str
        elif param["in"] == "header":
            invalid["headers"][param["name"]] = "x" * 1000
    if kind == "application/json":
        plain["json"] = {}
        invalid["json"] = {"unexpected_field": ["x"], "email": "not-an-email", "interests": ["Bad Interest!"]}
    elif kind == "multipart/form-data":  # a real file: an anonymous upload must import nothing
        plain["files"] = {"file": ("contacts.csv", SMALL_CSV, "text/csv")}
        invalid["files"] = {"file": ("contacts.csv", SMALL_CSV, "text/csv")}
        invalid["data"] = {"mapping": "{not json", "delimiter": "xx"}
    elif kind == "application/x-www-form-urlencoded":
        plain["data"] = {"answer": "yes"}
        invalid["data"] = {"answer": "maybe", "unexpected": "x"}
    return [plain, invalid]


def assert_locked(client: TestClient, method: str, path: str, op: dict[str, Any],
                  authorizations: dict[str, dict[str, str]], ids: dict[str, str] | None = None,
                  secrets: tuple[str, ...] = ()) -> None:
    for how, auth in authorizations.items():
        for variant in request_variants(path, op, ids or {}):
            headers = {**variant.pop("headers", {}), **auth}
            r = client.request(method, headers=headers, **variant)
            where = f"{method} {variant['url']} with {how} ({sorted(variant)})"
            assert r.status_code == 401, f"{where}: {r.status_code} {r.text}"
            assert r.headers.get("www-authenticate") == "Bearer", f"{where}: {dict(r.headers)}"
            assert r.json() == UNAUTHORIZED, f"{where}: {r.text}"
            for secret in secrets:
                assert secret.lower() not in r.text.lower(), f"{where} leaked {secret!r}"


def count_rows(client: TestClient, model) -> int:
    engine = client.app.state.engine
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(model)).one()


def samples(exposition: str, metric: str) -> list[tuple[dict[str, str], float]]:
    """The (labels, value) samples of one metric in Prometheus text format."""
    found = []
    for line in exposition.splitlines():
        m = re.fullmatch(rf"{metric}\{{(.*)\}} (\S+)", line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1)))
            found.append((labels, float(m.group(2))))
    return found


def loc_of(response) -> list[tuple]:
    return [tuple(err["loc"]) for err in response.json()["detail"]]


def schema_properties(spec: dict[str, Any], op: dict[str, Any]) -> set[str]:
    """The field names of an operation's body, refs resolved."""
    props: set[str] = set()
    for media in op.get("requestBody", {}).get("content", {}).values():
        schema = media["schema"]
        if "$ref" in schema:
            schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        props |= set(schema.get("properties", {}))
    return props


def example_body(method: str, path: str, ids: dict[str, Any]) -> dict[str, Any]:
    """A body each route accepts, as keyword arguments of ``client.request``;
    ``ids`` fills the ids it refers to (``contact_ids`` for bulk-tag). A new
    route with a body fails here until it is given one."""
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/admin/invites"): {"json": {"display_name": "Zoé Nouvelle", "email": "zoe@benevoles.example"}},
        ("POST", "/admin/volunteers"): {"json": {"display_name": "Yann Nouveau", "email": "yann@benevoles.example"}},
        ("POST", "/auth/redeem"): {"json": {"code": "c" * 32}},
        ("POST", "/auth/recover"): {"json": {"email": "nobody.here@benevoles.example"}},
        ("PUT", "/me/profile"): {"json": {"shared_interests": None}},
        ("PUT", "/me/networks/{network}"): {"json": {"access_token": "x-token-0123456789", "handle": "@alice"}},
        ("POST", "/contacts"): {"json": {"name": "Théo Neuf", "emails": ["theo.neuf@exemple.fr"],
                                          "interests": ["education"]}},
        ("PATCH", "/contacts/{contact_id}"): {"json": {"name": "Renamed by someone else",
                                                        "emails": ["taken.over@exemple.fr"],
                                                        "tags": ["taken"], "interests": []}},
        ("POST", "/contacts/bulk-tag"): {"json": {"contact_ids": ids.get("contact_ids", [DUMMY_ID]),
                                                   "add": ["taken"], "remove": ["education"],
                                                   "kind": "interest"}},
        ("PUT", "/contacts/{contact_id}/consent/email"): {"json": {"state": "withdrawn"}},
        ("POST", "/contacts/{contact_id}/invite"): {"json": {}},
        ("POST", "/inbox/{suggestion_id}/relay"): {"json": {"note": "À bientôt !"}},
        ("POST", "/imports"): {"files": {"file": ("contacts.csv", SMALL_CSV, "text/csv")}},
        ("POST", "/u/{token}"): {"data": {"List-Unsubscribe": "One-Click"}},
        ("POST", "/consent/{token}"): {"data": {"answer": "yes"}},
    }
    assert (method, path) in bodies, f"{method} {path} takes a body: give example_body() one"
    return bodies[(method, path)]


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

    BUG (reported): services/contacts/api/imports.py validates the mapping
    with ``TypeAdapter(ColumnMapping)``; ColumnMapping
    (services/contacts/importing/model.py) is a plain dataclass, for which
    pydantic ignores unknown keys: ``{"emial": ["Courriel"]}`` is silently
    dropped and the import starts (202)."""
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

    BUG (reported): services/feed/api.py ``publish_message``/``store`` checks
    for the key then inserts; two concurrent requests both insert, and the
    loser's unique-constraint IntegrityError escapes as a 500."""
    rounds = 3  # the race is timing-dependent: a few keys, each sent from many threads
    for n in range(rounds):
        staff = {**bearer(STAFF_TOKEN), "Idempotency-Key": f"raced-key-{n}"}
        outcomes = concurrently(8, lambda: feed.post("/messages", headers=staff, json=message_draft()))
        listed = feed.get("/messages", headers=bearer(STAFF_TOKEN)).json()
        assert len(listed) == n + 1, listed
        summary = [(status, body.get("id") if isinstance(body, dict) else body) for status, body in outcomes]
        assert all(status in (200, 201) for status, _ in outcomes), f"some retries failed: {summary}"
        assert {body["id"] for _, body in outcomes} == {listed[0]["id"]}, summary


def test_a_double_click_on_relay_is_one_relay(feed: TestClient, contacts: TestClient, matcher: TestClient):
    """Two clicks at once on "relay" are the same relay, both answered.

    BUG (reported): services/contacts/api/inbox.py ``relay`` reads
    ``row.message_id`` after ``plan_relay``; when a concurrent click wins the
    ledger insert, ``relaying._reserve`` rolls the session back, which
    expires ``row``, and the read of the closed session's row raises
    DetachedInstanceError (a 500, on both databases). The losing click also
    counts its own recipient as ``already_received``."""
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
        outcomes = concurrently(8, lambda: contacts.post(f"/inbox/{item['suggestion_id']}/relay", headers=alice))
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
