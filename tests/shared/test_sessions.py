"""Web sessions end when they should (issue 11, finding 10), on the real
apps (real nats-server; SQLite and PostgreSQL): a cookie captured before
sign-out is refused after it, on a second replica sharing the database
too; a new credential and erasure end every session; an expired cookie is
refused; and a malformed cookie reads as "no session", never a 500."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from services.contacts.app import create_app as contacts_app
from services.feed.app import create_app as feed_app
from services.feed.settings import FeedSettings
from shared.settings import CommonSettings
from tests.support.apps import PROVISIONING_TOKEN, STAFF_TOKEN, contacts_settings
from tests.support.volunteer_accounts import new_volunteer
from tests.support.web_client import Browser

ALICE = ("Alice Martin", "alice@benevoles.example")
STAFF = {"Authorization": f"Bearer {STAFF_TOKEN}"}


def replicas(make, count: int = 2) -> Iterator[list[TestClient]]:
    """``count`` instances of one service, each its own app (own process
    state), sharing one database: what two Kubernetes replicas are."""
    clients = [TestClient(make(), base_url="https://testserver") for _ in range(count)]
    for client in clients:
        client.__enter__()
    try:
        yield clients
    finally:
        for client in clients:
            client.__exit__(None, None, None)


@pytest.fixture
def contacts_pair(nats_url, db_url) -> Iterator[list[TestClient]]:
    yield from replicas(lambda: contacts_app(contacts_settings(nats_url, db_url)))


@pytest.fixture
def feed_pair(nats_url, db_url) -> Iterator[list[TestClient]]:
    yield from replicas(lambda: feed_app(FeedSettings(staff_token=STAFF_TOKEN, database_url=db_url,
                                                      common=CommonSettings(nats_url=nats_url))))


def web_sign_in(client: TestClient, token: str, prefix: str) -> Browser:
    browser = Browser(client)
    answer = browser.post_form(f"{prefix}/sign-in", {"token": token}, from_page=f"{prefix}/sign-in")
    assert answer.status_code == 303, answer.text
    return browser


def copy_on(client: TestClient, browser: Browser) -> Browser:
    """The same cookies in another browser, on another replica: a captured cookie."""
    thief = Browser(client)
    thief.jar = httpx.Cookies(browser.jar)
    return thief


def with_cookie(client: TestClient, page: str, name: str, value: bytes | str) -> httpx.Response:
    """A GET carrying exactly this cookie, whatever its bytes."""
    raw = value if isinstance(value, bytes) else value.encode()
    return client.get(page, headers={"cookie": name.encode() + b"=" + raw}, follow_redirects=False)


def signed_out(browser: Browser, page: str, sign_in: str) -> bool:
    answer = browser.get(page)
    return answer.status_code == 303 and answer.headers["location"] == sign_in


# -- volunteers ------------------------------------------------------------------------------------


def test_a_volunteer_cookie_captured_before_sign_out_is_refused_after_it_on_every_replica(contacts_pair):
    a, b = contacts_pair
    alice = new_volunteer(a, PROVISIONING_TOKEN, *ALICE)
    phone, laptop = web_sign_in(a, alice.token, "/app"), web_sign_in(b, alice.token, "/app")
    captured = copy_on(b, phone)
    for browser in (phone, laptop, captured):
        assert browser.get("/app/inbox").status_code == 200

    assert phone.post_form("/app/sign-out", from_page="/app/inbox").status_code == 303
    # the captured copy, the other device's session and a replay on either replica: all refused
    assert signed_out(captured, "/app/inbox", "/app/sign-in")
    assert signed_out(laptop, "/app/inbox", "/app/sign-in")
    assert signed_out(copy_on(a, captured), "/app/contacts", "/app/sign-in")
    # the API token is another credential: sign-out of the web app leaves it working
    assert a.get("/me", headers=alice.auth).status_code == 200

    # signing in again opens a new session, which a stale cookie cannot sign out
    again = web_sign_in(a, alice.token, "/app")
    stale = copy_on(b, captured)  # its signature and CSRF token are fine; its epoch is gone
    assert stale.post_form("/app/sign-out", from_page="/app/sign-in").status_code == 303
    assert again.get("/app/inbox").status_code == 200


def test_erasure_and_a_new_credential_end_every_session(contacts_pair):
    a, b = contacts_pair
    alice = new_volunteer(a, PROVISIONING_TOKEN, *ALICE)
    session = web_sign_in(a, alice.token, "/app")
    assert session.get("/app/inbox").status_code == 200
    assert b.delete("/me", headers=alice.auth).status_code == 204  # erased through the other replica
    assert signed_out(session, "/app/inbox", "/app/sign-in")
    assert signed_out(copy_on(b, session), "/app/inbox", "/app/sign-in")


def test_an_expired_volunteer_session_is_refused_and_sessions_last_hours(contacts_pair):
    a, _ = contacts_pair
    alice = new_volunteer(a, PROVISIONING_TOKEN, *ALICE)
    browser = Browser(a)
    answer = browser.post_form("/app/sign-in", {"token": alice.token}, from_page="/app/sign-in")
    cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("maillage_volunteer="))
    max_age = int(cookie.lower().split("max-age=")[1].split(";")[0])
    assert max_age == 12 * 3600, cookie  # hours, not the month it was
    assert browser.get("/app/inbox").status_code == 200

    # The same session, signed by the service's own key, 13 hours on: its
    # expiry is in the signed payload, so the browser keeping it changes nothing.
    sessions = a.app.state.web_sessions
    current = sessions.read_value(browser.jar["maillage_volunteer"])
    old = sessions._signer.sign("session", {"csrf": current.csrf, "sub": current.sub, "fp": current.fp,
                                           "ep": current.ep}, ttl_seconds=-3600)
    assert with_cookie(a, "/app/inbox", "maillage_volunteer", browser.jar["maillage_volunteer"]).status_code == 200
    refused = with_cookie(a, "/app/inbox", "maillage_volunteer", old)
    assert refused.status_code == 303 and refused.headers["location"] == "/app/sign-in"


# -- staff -----------------------------------------------------------------------------------------


def test_a_staff_cookie_captured_before_sign_out_is_refused_after_it_on_every_replica(feed_pair):
    a, b = feed_pair
    made = a.post("/staff", json={"name": "Camille (editor)", "role": "editor"}, headers=STAFF).json()
    for token in (made["token"], STAFF_TOKEN):  # a staff account, and the bootstrap admin (no account row)
        desk, home = web_sign_in(a, token, "/console"), web_sign_in(b, token, "/console")
        captured = copy_on(b, desk)
        assert captured.get("/console/messages").status_code == 200
        assert desk.post_form("/console/sign-out", from_page="/console/messages").status_code == 303
        for browser in (captured, home, copy_on(a, captured)):
            assert signed_out(browser, "/console/messages", "/console/sign-in")
        assert web_sign_in(b, token, "/console").get("/console/messages").status_code == 200


def test_revoking_a_staff_account_ends_its_sessions(feed_pair):
    a, b = feed_pair
    made = a.post("/staff", json={"name": "Camille (editor)", "role": "editor"}, headers=STAFF).json()
    desk = web_sign_in(a, made["token"], "/console")
    assert desk.get("/console/messages").status_code == 200
    assert b.post(f"/staff/{made['id']}/revoke", headers=STAFF).status_code == 200
    assert signed_out(desk, "/console/messages", "/console/sign-in")


# -- malformed cookies -----------------------------------------------------------------------------


def malformed(valid: str) -> dict[str, bytes]:
    body, _, mac = valid.partition(".")
    return {
        "non-ASCII": "\xe9".encode("latin-1"),
        "non-ASCII signature": f"{body}.\xe9\xe9".encode("latin-1"),
        "UTF-8 bytes": "é.é".encode(),
        "garbage": b"not-a-session",
        "a dot": b".",
        "truncated": valid[: len(valid) // 2].encode(),
        "another MAC": f"{body}.{mac[::-1]}".encode(),
        "base64 of nothing useful": base64.urlsafe_b64encode(b"\xff\xfe").rstrip(b"=") + b".AAAA",
        "huge": b"a" * 5000,
    }


@pytest.mark.parametrize("service", ["contacts", "feed"])
def test_a_malformed_cookie_reads_as_no_session_never_a_500(service, contacts_pair, feed_pair):
    client = (contacts_pair if service == "contacts" else feed_pair)[0]
    prefix, cookie = ("/app", "maillage_volunteer") if service == "contacts" else ("/console", "maillage_staff")
    token = new_volunteer(client, PROVISIONING_TOKEN, *ALICE).token if service == "contacts" else STAFF_TOKEN
    valid = web_sign_in(client, token, prefix).jar[cookie]
    pages = [f"{prefix}/sign-in", f"{prefix}/messages" if service == "feed" else f"{prefix}/inbox", f"{prefix}/"]
    for what, raw in malformed(valid).items():
        for page in pages:
            answer = with_cookie(client, page, cookie, raw)
            assert answer.status_code in (200, 303), f"{what} on {page}: {answer.status_code}"
            if answer.status_code == 303:
                assert answer.headers["location"] == f"{prefix}/sign-in", what
        out = client.post(f"{prefix}/sign-out", headers={"cookie": b"%s=%s" % (cookie.encode(), raw)},
                          data={"csrf": "x"}, follow_redirects=False)
        assert out.status_code == 403, f"{what}: sign-out {out.status_code}"  # no session: no CSRF token matches
    # the same request with the real cookie gets in: the refusals above were the cookie's
    assert with_cookie(client, pages[1], cookie, valid).status_code == 200
