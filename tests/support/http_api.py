"""Helpers for the tests that drive the services' HTTP APIs in process:
the tokens a route must refuse, the OpenAPI walk, and the short ways to
make a volunteer, a contact, an import or a draft."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlmodel import Session, func, select

from tests.support.apps import PROVISIONING_TOKEN, STAFF_TOKEN
from tests.support.volunteer_accounts import new_volunteer as invited_and_redeemed
from tests.support.waiting import poll

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
