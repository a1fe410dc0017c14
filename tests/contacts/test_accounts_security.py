"""The provisioning token cannot take over an account (issue 11, finding 1),
attacked on the real contacts app (real nats-server; SQLite and
PostgreSQL): re-posting an existing volunteer's email, with a chosen token
or without, inviting it again, or redeeming an invitation made for it
before, gives the provisioner no credential and leaves the volunteer's own
working. A volunteer who lost access gets it back themselves: a sign-in
link mailed to the account's own address, through the real email
dispatcher and a real SMTP server, which revokes every older token and
session."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from services.contacts.store import SignInLink, Volunteer
from shared.auth import hash_token
from tests.support.apps import PROVISIONING_TOKEN, STAFF_TOKEN, build_apps
from tests.support.volunteer_accounts import new_volunteer
from tests.support.web_client import Browser

PROVISIONING = {"Authorization": f"Bearer {PROVISIONING_TOKEN}"}
ALICE = ("Alice Martin", "alice@benevoles.example")
CAMILLE = {"name": "Camille Durand", "emails": ["camille.durand@exemple.fr"], "interests": ["education"],
           "consent": "confirmed", "consent_proof": "said yes at the market"}


@pytest.fixture
def contacts(nats_url, db_url) -> Iterator[TestClient]:
    with TestClient(build_apps(nats_url, db_url)["contacts"], base_url="https://testserver") as client:
        yield client


def loc(answer) -> list[list]:
    return [d["loc"] for d in answer.json()["detail"]] if isinstance(answer.json()["detail"], list) else []


def book_of(contacts: TestClient, auth: dict) -> list[str]:
    answer = contacts.get("/contacts", headers=auth)
    assert answer.status_code == 200, answer.text
    return [c["name"] for c in answer.json()["items"]]


def reads_nothing(contacts: TestClient, secret: str) -> bool:
    """Neither a bearer token nor a code that becomes one."""
    as_token = contacts.get("/contacts", headers={"Authorization": f"Bearer {secret}"}).status_code
    as_code = contacts.post("/auth/redeem", json={"code": secret}).status_code if len(secret) >= 16 else 400
    return as_token == 401 and as_code in (400, 409)


def strings_in(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    return []


def test_provisioning_cannot_take_over_an_existing_account(contacts):
    # An invitation made for Alice's address before she joined: the old way in.
    pending = contacts.post("/admin/invites", headers=PROVISIONING, json={"display_name": "Alice", "email": ALICE[1]})
    assert pending.status_code == 201, pending.text
    alice = new_volunteer(contacts, PROVISIONING_TOKEN, *ALICE)
    assert contacts.post("/contacts", headers=alice.auth, json=CAMILLE).status_code == 201
    with Session(contacts.app.state.engine) as s:
        before = s.exec(select(Volunteer.token_hash, Volunteer.session_epoch).where(Volunteer.id == alice.volunteer_id)).one()

    chosen = "attacker-chosen-token-0123456789"
    seen = []  # everything the provisioner is given back

    # 1. Re-post her email with a token of the provisioner's choosing: refused, naming the field.
    r = contacts.post("/admin/volunteers", headers=PROVISIONING,
                      json={"display_name": "Alice", "email": ALICE[1], "token": chosen})
    assert r.status_code == 422 and ["body", "token"] in loc(r), r.text
    seen.append(r.json())
    # 2. Without a token, in another case: a 409 naming email, no code, no token.
    for email in (ALICE[1], ALICE[1].upper()):
        r = contacts.post("/admin/volunteers", headers=PROVISIONING, json={"display_name": "Alice", "email": email})
        assert r.status_code == 409 and loc(r) == [["body", "email"]], r.text
        assert "token" not in r.json() and "code" not in r.json()
        seen.append(r.json())
    # 3. A new invitation for her address: 409 naming email.
    r = contacts.post("/admin/invites", headers=PROVISIONING, json={"display_name": "Alice", "email": ALICE[1]})
    assert r.status_code == 409 and loc(r) == [["body", "email"]], r.text
    seen.append(r.json())
    # 4. The invitation made before she joined: redeeming it re-keys nothing.
    r = contacts.post("/auth/redeem", json={"code": pending.json()["code"]})
    assert r.status_code == 409 and loc(r) == [["body", "code"]], r.text
    assert "token" not in r.json()
    seen.append(r.json())

    # Nothing the provisioner chose or was given reads a book.
    for secret in {chosen, PROVISIONING_TOKEN, pending.json()["code"], *(s for v in seen for s in strings_in(v))}:
        assert reads_nothing(contacts, secret), secret
    # Alice's token, session epoch and book are as they were.
    assert book_of(contacts, alice.auth) == ["Camille Durand"]
    with Session(contacts.app.state.engine) as s:
        after = s.exec(select(Volunteer.token_hash, Volunteer.session_epoch).where(Volunteer.id == alice.volunteer_id)).one()
    assert tuple(after) == tuple(before) and after[0] == hash_token(alice.token)


def test_provisioning_creates_an_account_and_an_invitation_never_a_token(contacts):
    r = contacts.post("/admin/volunteers", headers=PROVISIONING, json={"display_name": "Bob Nguyen",
                                                                       "email": "bob@benevoles.example"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert set(made) == {"volunteer_id", "invite_url", "code", "expires_at"}
    assert made["invite_url"].endswith(f"/join#{made['code']}")
    assert reads_nothing(contacts, made["volunteer_id"])
    # the account exists at once, without a credential; its invitation opens it once
    bob = contacts.post("/auth/redeem", json={"code": made["code"]})
    assert bob.status_code == 200 and bob.json()["volunteer_id"] == made["volunteer_id"]
    assert contacts.get("/me", headers={"Authorization": f"Bearer {bob.json()['token']}"}).status_code == 200
    assert contacts.post("/auth/redeem", json={"code": made["code"]}).status_code == 400


def test_two_invitations_for_one_new_address_make_one_account(contacts):
    """Redeemed at once, two invitations made before the account existed:
    one account, one token; the other is a 409, never a second key or a 500."""
    codes = [contacts.post("/admin/invites", headers=PROVISIONING, json={"display_name": "Bob", "email": email})
             .json()["code"] for email in ("bob@benevoles.example", "BOB@benevoles.example")]
    barrier, answers = threading.Barrier(2), []

    def redeem(code: str) -> None:
        barrier.wait()
        try:
            answers.append(contacts.post("/auth/redeem", json={"code": code}).status_code)
        except Exception as exc:  # TestClient re-raises a server error
            answers.append(type(exc).__name__)

    threads = [threading.Thread(target=redeem, args=(code,)) for code in codes]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(answers, key=str) == [200, 409], answers
    with Session(contacts.app.state.engine) as s:
        assert len(s.exec(select(Volunteer).where(Volunteer.email == "bob@benevoles.example")).all()) == 1


@pytest.mark.parametrize("route", ["/admin/volunteers", "/admin/invites"])
def test_a_display_name_with_a_line_break_is_refused_naming_it(contacts, route):
    r = contacts.post(route, headers=PROVISIONING,
                      json={"display_name": "Eve\r\nBcc: everyone@exemple.fr", "email": "eve@benevoles.example"})
    assert r.status_code == 422 and ["body", "display_name"] in loc(r), r.text
    assert contacts.post("/admin/invites", headers=PROVISIONING,
                         json={"display_name": "Eve", "email": "eve@benevoles.example"}).status_code == 201


def test_a_staff_name_with_a_line_break_is_refused_naming_it(nats_url, db_url):
    with TestClient(build_apps(nats_url, db_url)["feed"]) as feed:
        r = feed.post("/staff", headers={"Authorization": f"Bearer {STAFF_TOKEN}"},
                      json={"name": "Camille\r\nX-Injected: yes", "role": "editor"})
        assert r.status_code == 422 and ["body", "name"] in loc(r), r.text


# -- recovery by the volunteer, end to end ----------------------------------------------------------


@pytest.fixture
def mailing(nats_url, db_url, smtp_server) -> Iterator[TestClient]:
    """Contacts and the real email dispatcher, sending to a real SMTP server."""
    apps = build_apps(nats_url, db_url, smtp_port=smtp_server.port)
    with TestClient(apps["dispatch-email"]), \
            TestClient(apps["contacts"], base_url="https://testserver") as contacts:
        yield contacts


def test_a_lost_access_is_recovered_by_a_link_to_the_accounts_own_address(mailing, smtp_server):
    contacts = mailing
    alice = new_volunteer(contacts, PROVISIONING_TOKEN, *ALICE)
    assert contacts.post("/contacts", headers=alice.auth, json=CAMILLE).status_code == 201
    old_session = Browser(contacts)
    assert old_session.post_form("/app/sign-in", {"token": alice.token}, from_page="/app/sign-in").status_code == 303

    # Anyone may ask, for any address, and gets the same answer: no account enumeration.
    unknown = contacts.post("/auth/recover", json={"email": "nobody@benevoles.example"})
    known = contacts.post("/auth/recover", json={"email": ALICE[1].upper()})
    assert unknown.status_code == known.status_code == 202
    assert unknown.json() == known.json()

    mail = smtp_server.recorder.wait_for(1)[0]
    time.sleep(1.0)  # had the unknown address produced a mail, it would be here by now
    assert len(smtp_server.recorder.messages) == 1
    assert smtp_server.recorder.envelopes[0][1] == [ALICE[1]]  # her own address, the one the account has
    text = mail.get_body(("plain",)).get_content()
    code = re.search(r"/join#([\w-]+)", text).group(1)
    assert mail["List-Unsubscribe"] and "Alice" in text

    # Asking changes nothing by itself: whoever asked, her token and session still work.
    assert book_of(contacts, alice.auth) == ["Camille Durand"]
    assert old_session.get("/app/inbox").status_code == 200

    # She follows the link (the invitation page posts the fragment's code).
    new_session = Browser(contacts)
    assert new_session.get("/join").status_code == 200
    answer = new_session.post_form("/app/sign-in/invite", {"code": code}, from_page="/join")
    assert answer.status_code == 303 and answer.headers["location"] == "/app/inbox", answer.text
    assert new_session.get("/app/inbox").status_code == 200

    # Every older credential is revoked: the token, the web session; the link works once.
    assert contacts.get("/me", headers=alice.auth).status_code == 401
    refused = old_session.get("/app/inbox")
    assert refused.status_code == 303 and refused.headers["location"] == "/app/sign-in"
    assert contacts.post("/auth/redeem", json={"code": code}).status_code == 400
    with Session(contacts.app.state.engine) as s:
        links = s.exec(select(SignInLink).where(SignInLink.volunteer_id == alice.volunteer_id)).all()
        assert [link.code_hash for link in links] == [hash_token(code)] and links[0].used_at is not None
        assert code not in str(links[0].model_dump())  # only its hash is kept

    # The book is still hers, through the new session's pages.
    assert "Camille Durand" in new_session.get("/app/contacts").text


def test_the_sign_in_page_asks_for_a_link_the_same_way(mailing, smtp_server):
    contacts = mailing
    new_volunteer(contacts, PROVISIONING_TOKEN, *ALICE)
    browser = Browser(contacts)
    bad = browser.post_form("/app/sign-in/recover", {"email": "not an address"}, from_page="/app/sign-in")
    assert bad.status_code == 422 and "email:" in bad.text
    pages = [browser.post_form("/app/sign-in/recover", {"email": email}, from_page="/app/sign-in")
             for email in ("nobody@benevoles.example", ALICE[1])]
    assert [p.status_code for p in pages] == [200, 200]
    notices = [re.search(r'<p class="notice" role="status">([^<]+)</p>', p.text).group(1) for p in pages]
    assert notices[0] == notices[1]
    smtp_server.recorder.wait_for(1)
    time.sleep(1.0)
    assert [rcpt for _, rcpt in smtp_server.recorder.envelopes] == [[ALICE[1]]]
