"""A volunteer's social accounts and email identity (their own SMTP
account) in contacts: connect, see, disconnect; secrets sealed at rest and
never shown back (for email, only the server and the From address); each
volunteer sees and changes only their own; bad input is a 422 naming the
field; the sealed email identity is exactly what dispatch-email opens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from services.contacts.app import create_app
from services.contacts.book import open_book
from services.contacts.networks import connected_credentials, email_identity
from services.contacts.relay.share_links import share_links
from services.contacts.store import NetworkAccount, Volunteer
from shared.events import Channel
from shared.smtp_identity import SmtpIdentity
from tests.support.apps import contacts_settings
from tests.support.http_api import loc_of, new_volunteer

MASTODON = {"instance_url": "https://mastodon.example", "access_token": "mastodon-secret-token-4242",
            "handle": "@alice@mastodon.example"}
BLUESKY = {"handle": "alice.bsky.social", "app_password": "abcd-efgh-ijkl-mnop"}
SECRETS = ("mastodon-secret-token-4242", "abcd-efgh-ijkl-mnop")


@pytest.fixture
def contacts(nats_url: str, db_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(contacts_settings(nats_url, db_url))) as client:
        yield client


def test_connect_see_and_disconnect_without_ever_showing_a_secret(contacts: TestClient):
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    r = contacts.put("/me/networks/mastodon", headers=alice, json=MASTODON)
    assert r.status_code == 200, r.text
    assert r.json()["connected"] is True and r.json()["handle"] == "@alice@mastodon.example"
    assert contacts.put("/me/networks/bluesky", headers=alice, json=BLUESKY).status_code == 200
    listed = contacts.get("/me/networks", headers=alice)
    assert {n["network"]: n["connected"] for n in listed.json()} == {"mastodon": True, "bluesky": True, "x": False,
                                                                        "email": False}
    assert listed.json()[1]["handle"] == "alice.bsky.social" and listed.json()[1]["since"]
    for r in (listed, contacts.get("/me/networks/mastodon", headers=alice), contacts.get("/openapi.json")):
        assert not any(s in r.text for s in SECRETS)

    with Session(contacts.app.state.engine) as session:  # sealed at rest: neither secret nor handle in clear
        rows = session.exec(select(NetworkAccount)).all()
    assert len(rows) == 2 and not any(s.encode() in r.sealed or b"alice" in r.sealed for r in rows for s in SECRETS)

    assert contacts.delete("/me/networks/mastodon", headers=alice).status_code == 204
    assert contacts.get("/me/networks/mastodon", headers=alice).json()["connected"] is False
    assert contacts.delete("/me/networks/mastodon", headers=alice).status_code == 404


def test_a_volunteer_sees_and_changes_only_their_own_accounts(contacts: TestClient):
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    _, bob = new_volunteer(contacts, "Bob Nguyen", "bob@benevoles.example")
    contacts.put("/me/networks/mastodon", headers=alice, json=MASTODON)
    assert contacts.get("/me/networks/mastodon", headers=bob).json() == {
        "network": "mastodon", "connected": False, "handle": None, "host": None, "from_address": None, "since": None,
        "problem": None}
    assert contacts.delete("/me/networks/mastodon", headers=bob).status_code == 404
    contacts.put("/me/networks/mastodon", headers=bob, json={**MASTODON, "handle": "@bob@mastodon.example"})
    assert contacts.get("/me/networks/mastodon", headers=alice).json()["handle"] == "@alice@mastodon.example"
    assert contacts.get("/me/networks", headers={"Authorization": "Bearer nobody-0123456789"}).status_code == 401
    assert contacts.get("/me/networks").status_code == 401


def test_bad_input_names_the_field(contacts: TestClient):
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    r = contacts.put("/me/networks/bluesky", headers=alice, json={**BLUESKY, "app_password": "my real password"})
    assert r.status_code == 422 and ("body", "app_password") in loc_of(r)
    assert "my real password" not in r.text  # never echoed back
    r = contacts.put("/me/networks/mastodon", headers=alice, json={"instance_url": "not a url", "access_token": "t" * 10})
    assert r.status_code == 422 and ("body", "instance_url") in loc_of(r)
    r = contacts.put("/me/networks/mastodon", headers=alice, json={"instance_url": "https://m.example"})
    assert r.status_code == 422 and ("body", "access_token") in loc_of(r)
    r = contacts.put("/me/networks/facebook", headers=alice, json={"access_token": "t" * 10})
    assert r.status_code == 422 and ("path", "network") in loc_of(r)
    assert contacts.get("/me/networks/myspace", headers=alice).status_code == 422


def test_share_links_carry_the_short_variant_and_link_url_encoded():
    links = share_links("Réunion sur nos écoles, le 12 à 19 h & plus", "https://campagne.example/e?a=1&b=2")
    assert set(links) == {"facebook", "x", "whatsapp", "linkedin", "telegram"}
    assert links["facebook"] == "https://www.facebook.com/sharer/sharer.php?u=https%3A%2F%2Fcampagne.example%2Fe%3Fa%3D1%26b%3D2"
    assert links["x"].startswith("https://x.com/intent/post?text=R%C3%A9union%20sur%20nos%20%C3%A9coles")
    assert links["x"].endswith("%26%20plus%20https%3A%2F%2Fcampagne.example%2Fe%3Fa%3D1%26b%3D2")
    assert links["whatsapp"].startswith("https://wa.me/?text=R%C3%A9union")
    assert links["linkedin"] == "https://www.linkedin.com/sharing/share-offsite/?url=https%3A%2F%2Fcampagne.example%2Fe%3Fa%3D1%26b%3D2"
    assert links["telegram"].startswith("https://t.me/share/url?url=https%3A%2F%2Fcampagne.example") and "&text=R%C3%A9union" in links["telegram"]
    no_link = share_links("Votez dimanche", None)
    assert set(no_link) == {"x", "whatsapp", "telegram"}  # facebook and linkedin share only links


# -- the email identity ------------------------------------------------------------

OWN = {"host": "smtp.perso.example", "port": 587, "security": "starttls", "username": "alice.login",
       "password": "smtp-secret-pass-99", "from_address": "alice@perso.example", "display_name": "Alice M."}
OWN_SECRETS = ("smtp-secret-pass-99", "alice.login")


def test_connect_see_and_disconnect_an_email_identity_without_showing_a_secret(contacts: TestClient):
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    r = contacts.put("/me/networks/email", headers=alice, json=OWN)
    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in ("network", "connected", "host", "from_address")} == {
        "network": "email", "connected": True, "host": "smtp.perso.example", "from_address": "alice@perso.example"}
    assert r.json()["since"]
    listed = contacts.get("/me/networks", headers=alice)
    assert {n["network"]: n["connected"] for n in listed.json()}["email"] is True
    for answer in (r, listed, contacts.get("/me/networks/email", headers=alice), contacts.get("/openapi.json")):
        assert not any(s in answer.text for s in OWN_SECRETS)

    with Session(contacts.app.state.engine) as session:  # sealed at rest: no secret, no address in clear
        (row,) = session.exec(select(NetworkAccount)).all()
        assert not any(s.encode() in row.sealed for s in (*OWN_SECRETS, "perso.example", "smtp.perso"))
        book = open_book(session, contacts.app.state.keys.master, contacts.app.state.keys.index,
                         session.get(Volunteer, row.volunteer_id))
        own = email_identity(session, book)
        assert connected_credentials(session, book) == {}  # not a social account: no post job for it
    # what a relay seals into each job is exactly what the dispatcher opens
    sealer = contacts.app.state.sealer[Channel.email]
    opened = SmtpIdentity.model_validate(sealer.open("job-1", sealer.seal("job-1", own.transit())))
    assert (opened.host, opened.port, opened.password.get_secret_value()) == ("smtp.perso.example", 587,
                                                                              "smtp-secret-pass-99")

    assert contacts.delete("/me/networks/email", headers=alice).status_code == 204
    assert contacts.get("/me/networks/email", headers=alice).json()["connected"] is False
    assert contacts.delete("/me/networks/email", headers=alice).status_code == 404


def test_a_volunteer_sees_and_changes_only_their_own_email_identity(contacts: TestClient):
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    _, bob = new_volunteer(contacts, "Bob Nguyen", "bob@benevoles.example")
    assert contacts.put("/me/networks/email", headers=alice, json=OWN).status_code == 200
    assert contacts.get("/me/networks/email", headers=bob).json()["connected"] is False
    assert contacts.delete("/me/networks/email", headers=bob).status_code == 404
    contacts.put("/me/networks/email", headers=bob, json={**OWN, "from_address": "bob@perso.example"})
    assert contacts.get("/me/networks/email", headers=alice).json()["from_address"] == "alice@perso.example"
    assert contacts.get("/me/networks/email").status_code == 401


@pytest.mark.parametrize(("change", "field"), [
    ({"port": 70000}, "port"),
    ({"port": 0}, "port"),
    ({"from_address": "not an address"}, "from_address"),
    ({"security": "ssl"}, "security"),
    ({"security": "none"}, "security"),  # the password in clear over a network: only to localhost
    ({"host": "smtp://smtp.perso.example"}, "host"),
    ({"password": ""}, "password"),
    ({"surprise": "x"}, "surprise"),
])
def test_bad_email_identity_names_the_field_and_never_echoes_the_password(contacts: TestClient, change, field):
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    r = contacts.put("/me/networks/email", headers=alice, json={**OWN, **change})
    assert r.status_code == 422 and ("body", field) in loc_of(r), r.text
    assert "smtp-secret-pass-99" not in r.text
    assert contacts.get("/me/networks/email", headers=alice).json()["connected"] is False


def test_this_machines_own_server_is_refused_unless_the_allow_list_names_it(contacts: TestClient):
    # an SMTP server on loopback is one of our own ports (issue 11, finding 5): a local run names
    # its sink in MAILLAGE_EGRESS_ALLOW (tests/shared/test_egress.py takes it so); this app names none
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    for security, field in (("none", "security"), ("starttls", "host")):
        r = contacts.put("/me/networks/email", headers=alice, json={**OWN, "host": "127.0.0.1", "security": security})
        assert r.status_code == 422 and ("body", field) in loc_of(r), r.text
    assert contacts.get("/me/networks/email", headers=alice).json()["connected"] is False
