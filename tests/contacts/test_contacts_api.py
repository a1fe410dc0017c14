"""The contacts service's book, through its real FastAPI app (lifespan
running, a real nats-server), on SQLite and on PostgreSQL.

What is proven here:
- the campaign invites a volunteer: the code becomes a working token once,
  and neither the token nor the code is stored (only their hashes);
- search by name prefix, accents and case aside; filters by interest, tag,
  consent and channel; keyset pagination with no duplicate and no gap, even
  when the book grows between pages;
- edits (a clash with another contact's address is a 409), bulk tagging,
  the consent rules (a confirmation needs a proof, only the contact can undo
  a withdrawal), the one invitation per contact and what it tells the
  contact, and the contact's own answer through the signed link;
- export as JSON and as spreadsheet-safe CSV, deletion of a contact, and
  erasure of a whole book (the old token dies, no row of the book is left);
- one-click unsubscribe withdraws the consent, publishes a suppression,
  and every volunteer's later relays skip that person; one person in two
  books gets a message once; the per-person cap holds across volunteers;
- a file import reports its counts and its rejected rows with the field at
  fault, a second upload of the same file changes nothing, and a file over
  the limit is refused before anything is imported.
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import MetaData
from sqlmodel import Session, select

from services.contacts.store import ImportJob, Invite, SentItem
from shared.auth import hash_token
from shared.catalogue import DISPATCH_JOBS_STREAM, SUPPRESSIONS_STREAM
from shared.events import utcnow
from tests.support.apps import PROVISIONING_TOKEN
from tests.support.contacts_api import (
    CAMPAIGN,
    PUBLIC_URL,
    contacts_client,
    offer,
    relay_jobs,
)
from tests.support.http_api import (
    PROOF,
    add_contact,
    bearer,
    concurrently,
    count_rows,
    finished_import,
    google_csv,
    items,
    loc_of,
    new_volunteer,
    upload,
)
from tests.support.streams import stream_payloads
from tests.support.transit_keys import opened_job  # jobs are sealed on the stream: opened as dispatch-email does

PROVISIONING = bearer(PROVISIONING_TOKEN)


# -- helpers -------------------------------------------------------------------------------


def get_contact(contacts: TestClient, auth: dict[str, str], contact_id: str) -> dict[str, Any]:
    r = contacts.get(f"/contacts/{contact_id}", headers=auth)
    assert r.status_code == 200, r.text
    return r.json()


def consent_of(contacts: TestClient, auth: dict[str, str], contact_id: str) -> dict[str, Any]:
    return get_contact(contacts, auth, contact_id)["consent"]["email"]


def names(contacts: TestClient, auth: dict[str, str], **params: Any) -> set[str]:
    return {c["name"] for c in items(contacts, auth, limit=500, **params)}


def invitations(nats_url: str) -> list[dict[str, Any]]:
    return [opened_job(job) for _, job in stream_payloads(nats_url, DISPATCH_JOBS_STREAM.name)
            if job["kind"] == "invitation"]


def link_token(url_or_text: str, kind: str) -> str:
    return re.search(rf"{re.escape(PUBLIC_URL)}/{kind}/([\w.-]+)", url_or_text).group(1)


def all_rows(engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table the database holds, as the database has it."""
    metadata = MetaData()
    metadata.reflect(engine)
    with engine.connect() as conn:
        return {name: [dict(row._mapping) for row in conn.execute(table.select())]
                for name, table in metadata.tables.items()}


def as_text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, memoryview)) else str(value)


def relay(contacts: TestClient, auth: dict[str, str], suggestion_id: str) -> dict[str, Any]:
    r = contacts.post(f"/inbox/{suggestion_id}/relay", headers=auth)
    assert r.status_code == 200, r.text
    return r.json()["channels"]["email"]


# -- 1. the campaign invites a volunteer -------------------------------------------------------


def test_an_invite_code_becomes_a_token_once_and_nothing_is_stored_in_clear(contacts: TestClient, db_url: str):
    r = contacts.post("/admin/invites", headers=PROVISIONING,
                      json={"display_name": "Nadia Benali", "email": "Nadia.Benali@benevoles.example"})
    assert r.status_code == 201, r.text
    invite = r.json()
    code = invite["code"]
    assert invite["invite_url"] == f"{PUBLIC_URL}/join#{code}"  # in the fragment: never in a server log
    expires = datetime.fromisoformat(invite["expires_at"].replace("Z", "+00:00"))
    assert timedelta(days=13) < expires - utcnow() <= timedelta(days=14)

    r = contacts.post("/auth/redeem", json={"code": code})
    assert r.status_code == 200, r.text
    volunteer_id, token = r.json()["volunteer_id"], r.json()["token"]
    me = contacts.get("/me", headers=bearer(token))
    assert me.status_code == 200, me.text
    assert me.json() == {"volunteer_id": volunteer_id, "display_name": "Nadia Benali", "shared_interests": None}
    assert contacts.get("/contacts", headers=bearer(token)).json()["total"] == 0

    # The code works once.
    again = contacts.post("/auth/redeem", json={"code": code})
    assert again.status_code == 400, again.text
    assert again.json()["detail"].startswith("code:")
    assert contacts.get("/me", headers=bearer(token)).status_code == 200, "a refused redeem logged her out"

    # An expired code is refused too.
    late = contacts.post("/admin/invites", headers=PROVISIONING,
                         json={"display_name": "Léo Late", "email": "leo@benevoles.example"}).json()["code"]
    with Session(contacts.app.state.engine) as session:
        row = session.exec(select(Invite).where(Invite.code_hash == hash_token(late))).one()
        row.expires_at = utcnow() - timedelta(minutes=1)
        session.add(row)
        session.commit()
    assert contacts.post("/auth/redeem", json={"code": late}).status_code == 400

    # A new invitation to the same person is refused: provisioning never
    # re-keys an account (issue 11, finding 1); her token and book stay hers.
    add_contact(contacts, bearer(token), "Camille Durand", "camille.durand@exemple.fr", ["education"])
    r = contacts.post("/admin/invites", headers=PROVISIONING,
                      json={"display_name": "Nadia B.", "email": "nadia.benali@benevoles.example"})
    assert r.status_code == 409, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "email"]
    assert [c["name"] for c in items(contacts, bearer(token))] == ["Camille Durand"]

    # Tokens and codes are stored hashed: the strings are nowhere in the
    # database, their SHA-256 is.
    secrets = {"token": token, "code": code, "late code": late}
    rows = all_rows(contacts.app.state.engine)
    dump = "\n".join(as_text(v) for table in rows.values() for row in table for v in row.values())
    for what, secret in secrets.items():
        assert secret not in dump, f"the {what} is stored in clear"
    assert hash_token(token) in dump and hash_token(code) in dump
    assert [v["token_hash"] for v in rows["volunteer"]] == [hash_token(token)]
    if db_url.startswith("sqlite"):  # the files themselves, write-ahead log included
        path = Path(db_url.removeprefix("sqlite:///"))
        raw = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        for what, secret in secrets.items():
            assert secret.encode() not in raw, f"the {what} is in the database file"


def test_a_code_redeemed_twice_at_once_gives_one_working_token(contacts: TestClient):
    """A double click on the invite link: one token, and it works.

    Concurrent redeems all read the invite as unused: only one may win,
    the others neither answer a 500 (the unique email) nor overwrite the
    winner's token with a second one, on SQLite and on PostgreSQL."""
    for n in range(3):  # the race is timing-dependent: a few codes, each redeemed from many threads
        code = contacts.post("/admin/invites", headers=PROVISIONING, json={
            "display_name": f"Nadia {n}", "email": f"nadia{n}@benevoles.example"}).json()["code"]
        outcomes = concurrently(6, lambda code=code: contacts.post("/auth/redeem", json={"code": code}))
        granted = [body["token"] for status, body in outcomes if status == 200]
        assert all(status in (200, 400) for status, _ in outcomes), outcomes
        assert len(granted) == 1, f"{len(granted)} tokens for one code: {[s for s, _ in outcomes]}"
        assert contacts.get("/me", headers=bearer(granted[0])).status_code == 200


# -- 2. finding contacts ------------------------------------------------------------------------


def test_search_filters_and_keyset_pagination(contacts: TestClient):
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    helene = add_contact(contacts, alice, "Hélène Dubois", "helene.dubois@exemple.fr", ["education"],
                         tags=["voisins"])
    add_contact(contacts, alice, "Helena Martin", "h.martin@exemple.fr", ["transport"], consent="unknown")
    add_contact(contacts, alice, "Paul Hélias", "paul.h@exemple.fr", ["education", "seniors"], consent="withdrawn")
    r = contacts.post("/contacts", headers=alice, json={"name": "Hugo Lefèvre", "phones": ["06 12 34 56 78"],
                                                         "interests": ["education"], "tags": ["marche"]})
    assert r.status_code == 201, r.text
    assert r.json()["phones"] == ["+33612345678"] and r.json()["emails"] == []
    add_contact(contacts, alice, "Ana Dupont", "ana@exemple.fr", ["seniors"], tags=["voisins", "marche"],
                handles={"mastodon": "@ana@piaille.fr"})

    # Prefixes of any word of the name, accents and case aside.
    assert names(contacts, alice, q="hel") == {"Hélène Dubois", "Helena Martin", "Paul Hélias"}
    assert names(contacts, alice, q="Hél") == {"Hélène Dubois", "Helena Martin", "Paul Hélias"}
    assert names(contacts, alice, q="HELENE") == {"Hélène Dubois"}
    assert names(contacts, alice, q="hélè dub") == {"Hélène Dubois"}
    assert names(contacts, alice, q="lefevre") == {"Hugo Lefèvre"}
    assert names(contacts, alice, q="helene.dubois") == {"Hélène Dubois"}  # the address's words
    assert names(contacts, alice, q="dubois martin") == set()  # every word must match
    assert names(contacts, alice, q="zz") == set()

    # Filters, alone and together.
    assert names(contacts, alice, interest="education") == {"Hélène Dubois", "Paul Hélias", "Hugo Lefèvre"}
    assert names(contacts, alice, tag="voisins") == {"Hélène Dubois", "Ana Dupont"}
    assert names(contacts, alice, consent="confirmed") == {"Hélène Dubois", "Ana Dupont"}
    assert names(contacts, alice, consent="withdrawn") == {"Paul Hélias"}
    assert names(contacts, alice, consent="unknown") == {"Helena Martin", "Hugo Lefèvre"}
    assert names(contacts, alice, channel="phone") == {"Hugo Lefèvre"}
    assert names(contacts, alice, channel="mastodon") == {"Ana Dupont"}
    assert len(names(contacts, alice, channel="email")) == 4
    assert names(contacts, alice, q="hel", interest="education") == {"Hélène Dubois", "Paul Hélias"}
    assert names(contacts, alice, tag="marche", consent="confirmed", channel="email") == {"Ana Dupont"}
    page = contacts.get("/contacts", headers=alice, params={"interest": "education", "q": "h"}).json()
    assert page["total"] == len(page["items"]), page

    r = contacts.get("/contacts", headers=alice, params={"cursor": "not-a-cursor"})
    assert r.status_code == 422 and ("query", "cursor") in loc_of(r), r.text

    # Keyset pagination: 120 contacts in pages of 50, and two more added
    # while paging (they come last, nothing is seen twice or skipped).
    _, bob = new_volunteer(contacts, "Bob Leroy", "bob@benevoles.example")
    created = [add_contact(contacts, bob, f"Contact {n:03d}", f"contact{n:03d}@exemple.fr",
                           ["education"] if n % 3 == 0 else ["transport"], consent="unknown")["id"]
               for n in range(120)]
    seen, pages, cursor = [], [], None
    while True:
        r = contacts.get("/contacts", headers=bob, params={"limit": 50, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        pages.append(len(page["items"]))
        seen += [c["id"] for c in page["items"]]
        if len(pages) == 1:
            assert page["total"] == 120
            created += [add_contact(contacts, bob, f"Late {n}", f"late{n}@exemple.fr", ["education"],
                                    consent="unknown")["id"] for n in range(2)]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 10, "pagination does not end"
    assert pages == [50, 50, 22], pages
    assert len(seen) == len(set(seen)), "a contact was seen twice"
    assert seen == created, "pages skipped or reordered contacts"
    assert page["total"] == 122

    # The same, through a filter, in small pages.
    wanted = [cid for n, cid in enumerate(created[:120]) if n % 3 == 0] + created[120:]
    seen, cursor = [], None
    while True:
        params = {"interest": "education", "limit": 7, **({"cursor": cursor} if cursor else {})}
        page = contacts.get("/contacts", headers=bob, params=params).json()
        assert page["total"] == len(wanted)
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == wanted

    # One volunteer's cursor opens nothing in another's book.
    first = contacts.get("/contacts", headers=bob, params={"limit": 1}).json()
    r = contacts.get("/contacts", headers=alice, params={"cursor": first["next_cursor"]})
    assert r.status_code == 200 and not {c["id"] for c in r.json()["items"]} & set(created), r.text
    assert get_contact(contacts, alice, helene["id"])["name"] == "Hélène Dubois"


def test_search_by_a_whole_email_address(contacts: TestClient):
    """GET /contacts' ``q`` promises "words of a name or email": a volunteer
    pastes an address and expects its contact. The whole
    address is indexed, not only its local part, since every word of the
    query must match."""
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    add_contact(contacts, alice, "Ana Dupont", "ana.dupont@exemple.fr", ["seniors"])
    add_contact(contacts, alice, "Louis Petit", "louis@ailleurs.example", ["seniors"])
    assert names(contacts, alice, q="ana.dupont") == {"Ana Dupont"}
    assert names(contacts, alice, q="ana.dupont@exemple.fr") == {"Ana Dupont"}


# -- 3. editing, tagging, consent, invitation ---------------------------------------------------


def test_edit_tag_and_consent_rules(contacts: TestClient):
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    camille = add_contact(contacts, alice, "Camille Durand", "camille.durand@exemple.fr", ["education"],
                          consent="unknown")
    louis = add_contact(contacts, alice, "Louis Petit", "louis.petit@exemple.fr", ["seniors"], consent="unknown",
                        phones=["+33 6 11 22 33 44"])
    ines = add_contact(contacts, alice, "Inès Moreau", "ines.moreau@exemple.fr", ["transport"], consent="unknown")

    # PATCH changes only the fields given.
    r = contacts.patch(f"/contacts/{camille['id']}", headers=alice, json={
        "name": "Camille Durand-Roux", "emails": ["Camille.Roux@Exemple.fr", "camille.durand@exemple.fr"],
        "tags": ["porte-a-porte"], "commune": "Lyon", "notes": "rencontrée au marché"})
    assert r.status_code == 200, r.text
    edited = r.json()
    assert edited["name"] == "Camille Durand-Roux"
    assert edited["emails"] == ["camille.roux@exemple.fr", "camille.durand@exemple.fr"]
    assert (edited["tags"], edited["interests"], edited["commune"]) == (["porte-a-porte"], ["education"], "Lyon")
    assert edited["consent"] == camille["consent"] and edited["created_at"] == camille["created_at"]
    assert get_contact(contacts, alice, camille["id"]) == edited
    assert names(contacts, alice, q="roux") == {"Camille Durand-Roux"}
    assert names(contacts, alice, q="camille.roux") == {"Camille Durand-Roux"}
    assert names(contacts, alice, tag="porte-a-porte") == {"Camille Durand-Roux"}
    assert names(contacts, alice, channel="phone") == {"Louis Petit"}

    # An edit that would give a contact another contact's address: 409, nothing changed.
    for patch, field in (({"emails": ["LOUIS.PETIT@exemple.fr"]}, "email"),
                         ({"phones": ["06 11 22 33 44"]}, "phone")):
        r = contacts.patch(f"/contacts/{ines['id']}", headers=alice, json={"name": "Inès M.", **patch})
        assert r.status_code == 409, f"{patch}: {r.status_code} {r.text}"
        assert field in r.json()["detail"], r.text
        assert get_contact(contacts, alice, ines["id"]) == ines
    # Its own address again is no clash.
    r = contacts.patch(f"/contacts/{ines['id']}", headers=alice, json={"emails": ["INES.MOREAU@exemple.fr"]})
    assert r.status_code == 200, r.text

    # Bulk tagging: add, again (nothing changes), remove; interests too.
    ids = [camille["id"], louis["id"], ines["id"]]
    r = contacts.post("/contacts/bulk-tag", headers=alice, json={"contact_ids": ids, "add": ["porte-a-porte"]})
    assert r.status_code == 200 and r.json() == {"contacts": 3, "changed": 2}, r.text
    r = contacts.post("/contacts/bulk-tag", headers=alice, json={"contact_ids": ids, "add": ["porte-a-porte"]})
    assert r.json() == {"contacts": 3, "changed": 0}, r.text
    assert names(contacts, alice, tag="porte-a-porte") == {"Camille Durand-Roux", "Louis Petit", "Inès Moreau"}
    r = contacts.post("/contacts/bulk-tag", headers=alice,
                      json={"contact_ids": ids[:2], "remove": ["porte-a-porte"], "add": ["tractage"]})
    assert r.status_code == 200 and r.json()["changed"] == 4, r.text
    assert names(contacts, alice, tag="porte-a-porte") == {"Inès Moreau"}
    assert names(contacts, alice, tag="tractage") == {"Camille Durand-Roux", "Louis Petit"}
    r = contacts.post("/contacts/bulk-tag", headers=alice,
                      json={"contact_ids": ids, "kind": "interest", "add": ["logement"], "remove": ["seniors"]})
    assert r.status_code == 200, r.text
    assert names(contacts, alice, interest="logement") == {"Camille Durand-Roux", "Louis Petit", "Inès Moreau"}
    assert names(contacts, alice, interest="seniors") == set()
    assert get_contact(contacts, alice, camille["id"])["tags"] == ["tractage"]  # tags untouched by interests
    # One unknown id: a 404, and none of the others is tagged.
    r = contacts.post("/contacts/bulk-tag", headers=alice,
                      json={"contact_ids": [*ids, "0" * 32], "add": ["jamais"]})
    assert r.status_code == 404, r.text
    assert names(contacts, alice, tag="jamais") == set()
    r = contacts.post("/contacts/bulk-tag", headers=alice, json={"contact_ids": ids, "add": ["Pas Un Mot!"]})
    assert r.status_code == 422 and ("body", "add", 0) in loc_of(r), r.text

    # Consent: a confirmation needs a proof of how and when they agreed.
    r = contacts.post("/contacts", headers=alice, json={"name": "Zoé", "emails": ["zoe@exemple.fr"],
                                                         "consent": "confirmed"})
    assert r.status_code == 422 and ("body", "consent_proof") in loc_of(r), r.text
    url = f"/contacts/{louis['id']}/consent/email"
    for body in ({"state": "confirmed"}, {"state": "confirmed", "proof": "   "}):
        r = contacts.put(url, headers=alice, json=body)
        assert r.status_code == 422, f"{body}: {r.text}"
        assert ("body", "state") in loc_of(r) and "proof" in r.text, r.text
    assert consent_of(contacts, alice, louis["id"])["state"] == "unknown"
    # Only an invitation makes a contact "invited".
    r = contacts.put(url, headers=alice, json={"state": "invited"})
    assert r.status_code == 422 and ("body", "state") in loc_of(r), r.text

    r = contacts.put(url, headers=alice, json={"state": "confirmed", "proof": PROOF})
    assert r.status_code == 200, r.text
    assert r.json()["consent"]["email"]["state"] == "confirmed"
    assert r.json()["consent"]["email"]["source"] == "volunteer"
    assert contacts.get("/me/profile", headers=alice).json()["audience"] == {"logement": {"email": 1}}
    # Anyone may stop messages; only the contact can undo it.
    r = contacts.put(url, headers=alice, json={"state": "withdrawn"})
    assert r.status_code == 200 and r.json()["consent"]["email"]["state"] == "withdrawn", r.text
    r = contacts.put(url, headers=alice, json={"state": "confirmed", "proof": "he said yes again"})
    assert r.status_code == 422 and ("body", "state") in loc_of(r), r.text
    assert "withdrawal" in r.text, r.text
    assert consent_of(contacts, alice, louis["id"])["state"] == "withdrawn"
    assert contacts.get("/me/profile", headers=alice).json()["audience"] == {}
    r = contacts.post(f"/contacts/{louis['id']}/invite", headers=alice, json={})
    assert r.status_code == 409, r.text


def test_an_invitation_is_sent_once_and_the_contact_answers_through_its_link(contacts: TestClient,
                                                                               nats_url: str):
    alice_id, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    camille = add_contact(contacts, alice, "Camille Durand", "camille.durand@exemple.fr", ["education"],
                          consent="unknown")
    louis = add_contact(contacts, alice, "Louis Petit", "louis.petit@exemple.fr", ["education"],
                        consent="unknown")
    r = contacts.post("/contacts", headers=alice, json={"name": "Hugo Lefèvre", "phones": ["0612345678"]})
    hugo = r.json()

    r = contacts.post(f"/contacts/{camille['id']}/invite", headers=alice, json={})
    assert r.status_code == 200, r.text
    consent = r.json()["consent"]["email"]
    assert (consent["state"], consent["source"]) == ("invited", "invitation") and consent["invited_at"]

    jobs = invitations(nats_url)
    assert len(jobs) == 1, jobs
    job = jobs[0]
    assert job["kind"] == "invitation"
    assert job["recipient_email"] == "camille.durand@exemple.fr" and job["recipient_name"] == "Camille Durand"
    assert (job["sender_name"], job["reply_to"], job["volunteer_id"]) == (
        "Alice Martin", "alice@benevoles.example", alice_id)
    assert "Alice Martin" in job["subject"] and CAMPAIGN in job["subject"]
    body = job["body_text"]
    # Who writes, on whose behalf, where the address came from, how to answer.
    assert "Alice Martin" in body and f"bénévole de {CAMPAIGN}" in body and f"volunteer for {CAMPAIGN}" in body
    assert "carnet d'adresses personnel" in body and "personal address book" in body
    assert "campaign staff cannot see it" in body
    consent_token = link_token(body, "consent")
    assert job["unsubscribe_url"].startswith(f"{PUBLIC_URL}/u/")
    assert "camille.durand" not in consent_token and "camille.durand" not in job["unsubscribe_url"]

    # Once: a second invitation is a 409 and sends nothing.
    r = contacts.post(f"/contacts/{camille['id']}/invite", headers=alice, json={})
    assert r.status_code == 409, r.text
    assert "consent" in r.json()["detail"] and "once" in r.json()["detail"]
    assert len(invitations(nats_url)) == 1
    # Nor to a contact without email, nor an unknown campaign message.
    r = contacts.post(f"/contacts/{hugo['id']}/invite", headers=alice, json={})
    assert r.status_code == 409 and "emails" in r.json()["detail"], r.text
    r = contacts.post(f"/contacts/{louis['id']}/invite", headers=alice, json={"message_id": "0" * 32})
    assert r.status_code == 404, r.text
    assert consent_of(contacts, alice, louis["id"])["state"] == "unknown"
    assert len(invitations(nats_url)) == 1

    # The contact opens the link: a page to answer, and GET changes nothing.
    r = contacts.get(f"/consent/{consent_token}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), r.text
    assert "answer" in r.text and "yes" in r.text and "no" in r.text
    assert "Camille" not in r.text and "camille.durand" not in r.text
    assert consent_of(contacts, alice, camille["id"])["state"] == "invited"

    r = contacts.post(f"/consent/{consent_token}", data={"answer": "yes"})
    assert r.status_code == 200, r.text
    consent = consent_of(contacts, alice, camille["id"])
    assert (consent["state"], consent["source"]) == ("confirmed", "contact")
    assert contacts.get("/me/profile", headers=alice).json()["audience"] == {"education": {"email": 1}}
    r = contacts.post(f"/consent/{consent_token}", data={"answer": "maybe"})
    assert r.status_code == 422, r.text

    # Another says no; later, only their own link can turn it into a yes.
    r = contacts.post(f"/contacts/{louis['id']}/invite", headers=alice, json={})
    assert r.status_code == 200, r.text
    louis_token = link_token(invitations(nats_url)[-1]["body_text"], "consent")
    assert contacts.post(f"/consent/{louis_token}", data={"answer": "no"}).status_code == 200
    consent = consent_of(contacts, alice, louis["id"])
    assert (consent["state"], consent["source"]) == ("withdrawn", "contact")
    r = contacts.put(f"/contacts/{louis['id']}/consent/email", headers=alice,
                     json={"state": "confirmed", "proof": "he changed his mind"})
    assert r.status_code == 422, r.text
    assert contacts.post(f"/consent/{louis_token}", data={"answer": "yes"}).status_code == 200
    assert consent_of(contacts, alice, louis["id"])["state"] == "confirmed"
    assert len(invitations(nats_url)) == 2

    # A link to a deleted contact says so, and changes nothing.
    assert contacts.delete(f"/contacts/{louis['id']}", headers=alice).status_code == 204
    r = contacts.post(f"/consent/{louis_token}", data={"answer": "yes"})
    assert r.status_code == 410, r.text


# -- 4. export, delete, erase -------------------------------------------------------------------


def test_export_json_and_spreadsheet_safe_csv(contacts: TestClient):
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    formula = "=cmd|' /C calc'!A0"
    evil = add_contact(contacts, alice, formula, "evil@exemple.fr", ["education"], tags=["voisins"],
                       notes="+33 is not a formula", commune="@Lyon")
    plain = add_contact(contacts, alice, "Hélène Dubois", "helene@exemple.fr", ["seniors"], consent="unknown",
                        phones=["06 12 34 56 78"], handles={"mastodon": "@helene@piaille.fr"})

    r = contacts.get("/contacts/export", headers=alice)  # JSON by default
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert 'attachment; filename="contacts.json"' in r.headers["content-disposition"]
    exported = r.json()
    assert [c["id"] for c in exported] == [evil["id"], plain["id"]]
    assert exported[0]["name"] == formula  # JSON is data: kept as typed
    assert {k: v for k, v in exported[1].items() if k != "updated_at"} == {
        k: v for k, v in get_contact(contacts, alice, plain["id"]).items() if k != "updated_at"}

    r = contacts.get("/contacts/export", headers=alice, params={"format": "csv"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="contacts.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert len(rows) == 2
    assert rows[0]["name"] == "'" + formula, rows[0]
    assert rows[0]["notes"] == "'+33 is not a formula" and rows[0]["commune"] == "'@Lyon"
    assert rows[0]["email_consent"] == "confirmed" and rows[0]["interests"] == "education"
    assert rows[1] == {**rows[1], "name": "Hélène Dubois", "emails": "helene@exemple.fr",
                       "phones": "'+33612345678", "handles": "mastodon:@helene@piaille.fr",
                       "email_consent": "unknown"}
    for row in rows:  # no cell a spreadsheet would run
        assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in row.values()), row

    r = contacts.get(f"/contacts/{evil['id']}/export", headers=alice)
    assert r.status_code == 200, r.text
    assert r.json()["name"] == formula and r.json()["consent"]["email"]["state"] == "confirmed"
    assert r.json()["notes"] == "+33 is not a formula"

    r = contacts.get("/contacts/export", headers=alice, params={"format": "xlsx"})
    assert r.status_code == 422, r.text


def test_delete_a_contact_and_erase_a_whole_book(contacts: TestClient, nats_url: str):
    alice_id, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    bob_id, bob = new_volunteer(contacts, "Bob Leroy", "bob@benevoles.example")
    camille = add_contact(contacts, alice, "Camille Durand", "camille.durand@exemple.fr", ["education"])
    gone = add_contact(contacts, alice, "Louis Petit", "louis.petit@exemple.fr", ["education"])
    invited = add_contact(contacts, alice, "Zoé Lambert", "zoe.lambert@exemple.fr", ["housing"], consent="invited")
    bobs = add_contact(contacts, bob, "Camille D.", "camille.durand@exemple.fr", ["education"])

    # Deleting one contact.
    r = contacts.delete(f"/contacts/{gone['id']}", headers=alice)
    assert r.status_code == 204, r.text
    assert contacts.get(f"/contacts/{gone['id']}", headers=alice).status_code == 404
    assert contacts.delete(f"/contacts/{gone['id']}", headers=alice).status_code == 404
    assert gone["id"] not in contacts.get("/contacts/export", headers=alice).text
    assert [c["name"] for c in items(contacts, alice)] == ["Camille Durand", "Zoé Lambert"]
    # Its address is free again.
    again = add_contact(contacts, alice, "Louis P.", "louis.petit@exemple.fr", ["seniors"], consent="unknown")

    # Fill every part of the book: an import with a rejected row, a relay, consent history.
    r = upload(contacts, alice, google_csv("Rémi Import,Rémi,Import,,,remi.import@exemple.fr,",
                                           "Bad Row,Bad,Row,,,not-an-address,"))
    import_id = r.json()["id"]
    assert finished_import(contacts, alice, import_id)["status"] == "done"
    suggestions = offer(contacts, nats_url, ["education"], {alice_id: alice, bob_id: bob})
    assert relay(contacts, alice, suggestions[alice_id])["queued"] == 1
    alice_relay_id = contacts.get("/inbox", headers=alice).json()[0]["relay_id"]
    book_ids = {alice_id, import_id, alice_relay_id, suggestions[alice_id],
                *(c["id"] for c in contacts.get("/contacts/export", headers=alice).json())}
    assert {camille["id"], invited["id"], again["id"], gone["id"]} - book_ids == {gone["id"]}
    book_ids.add(gone["id"])
    token = alice["Authorization"].split()[1]

    r = contacts.delete("/me", headers=alice)
    assert r.status_code == 204, r.text
    assert contacts.get("/me", headers=alice).status_code == 401
    assert contacts.get("/contacts", headers=alice).status_code == 401

    # No row of the book is left: the volunteer row alone, keyless and
    # tokenless. Campaign-wide tables hold keyed hashes of addresses, never
    # the book (the suppression list, the who-got-which-message ledger).
    campaign_wide = {"deliveryledger", "suppression", "campaignmessage", "alembic_version"}
    left = []
    for table, rows in all_rows(contacts.app.state.engine).items():
        for row in rows:
            if table == "volunteer" and row["id"] == alice_id:
                assert row["wrapped_key"] is None and row["token_hash"] is None, row
                continue
            if table in campaign_wide or table == "sentitem":  # sentitem: see the next test
                continue
            hits = {k for k, v in row.items() if v is not None and as_text(v) in book_ids}
            if hits:
                left.append(f"{table}: {({k: row[k] for k in hits})}")
    assert not left, "rows of the erased book are still stored:\n" + "\n".join(left)
    dump = "\n".join(as_text(v) for rows in all_rows(contacts.app.state.engine).values()
                     for row in rows for v in row.values())
    assert token not in dump and hash_token(token) not in dump

    # Bob's book is untouched, and his relay of the same message works.
    assert get_contact(contacts, bob, bobs["id"]) == bobs
    assert relay(contacts, bob, suggestions[bob_id])["skipped"] == {"unreachable": 1}


def test_erasing_a_book_leaves_no_sent_history(contacts: TestClient, nats_url: str):
    """DELETE /me must leave no row of the book; the history of what was
    sent to whom is part of it. A
    ``SentItem`` row would keep the erased book's contact, relay and
    message ids."""
    alice_id, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    camille = add_contact(contacts, alice, "Camille Durand", "camille.durand@exemple.fr", ["education"])
    suggestions = offer(contacts, nats_url, ["education"], {alice_id: alice})
    assert relay(contacts, alice, suggestions[alice_id])["queued"] == 1
    assert contacts.delete("/me", headers=alice).status_code == 204
    with Session(contacts.app.state.engine) as session:
        left = session.exec(select(SentItem).where(SentItem.contact_id == camille["id"])).all()
    assert left == [], f"sent history of the erased book: {left}"


# -- 5. unsubscribe, once per person, the cap ----------------------------------------------------


def test_unsubscribe_and_the_campaign_wide_rules_of_a_relay(nats_url: str, db_url: str):
    """Across volunteers: one message per person (whoever relays it), no
    message after a one-click unsubscribe, at most ``recipient_cap`` per
    person per window (1 here)."""
    with contacts_client(nats_url, db_url, recipient_cap=1) as contacts:
        alice_id, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
        bob_id, bob = new_volunteer(contacts, "Bob Leroy", "bob@benevoles.example")
        volunteers = {alice_id: alice, bob_id: bob}
        # Paul and Quentin are in both books; Rose only in Bob's.
        a_paul = add_contact(contacts, alice, "Paul Roux", "paul.roux@exemple.fr", ["education"])
        add_contact(contacts, alice, "Quentin Blanc", "quentin.blanc@exemple.fr", ["transport"])
        b_paul = add_contact(contacts, bob, "Paulo", "Paul.Roux@exemple.fr", ["education"])
        add_contact(contacts, bob, "Quentin B.", "quentin.blanc@exemple.fr", ["transport"])
        add_contact(contacts, bob, "Rose Petit", "rose.petit@exemple.fr", ["transport"])

        # A broad message: Alice relays first, Bob's relay skips who got it from her.
        first = offer(contacts, nats_url, ["education", "transport"], volunteers, title="Premier message")
        assert relay(contacts, alice, first[alice_id]) == {
            "status": "sending", "queued": 2, "delivered": 0, "failed": 0, "skipped": {}}
        bob_first = relay(contacts, bob, first[bob_id])
        assert (bob_first["queued"], bob_first["skipped"]) == (1, {"unreachable": 2}), bob_first
        jobs = relay_jobs(nats_url)
        assert sorted(j["recipient_email"] for j in jobs) == [
            "paul.roux@exemple.fr", "quentin.blanc@exemple.fr", "rose.petit@exemple.fr"], "someone got it twice"
        relay_id = contacts.get("/inbox", headers=bob).json()[0]["relay_id"]
        assert contacts.get(f"/relays/{relay_id}", headers=bob).json()["channels"]["email"]["skipped"] == {
            "unreachable": 2}

        # Paul unsubscribes in one click from Alice's email (RFC 8058).
        paul_job = next(j for j in jobs if j["recipient_email"] == "paul.roux@exemple.fr")
        assert paul_job["volunteer_id"] == alice_id
        token = link_token(paul_job["unsubscribe_url"], "u")
        r = contacts.get(f"/u/{token}")  # a mail scanner follows the link: nothing happens
        assert r.status_code == 200 and consent_of(contacts, alice, a_paul["id"])["state"] == "confirmed"
        r = contacts.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200, r.text
        assert "Paul" not in r.text and "paul.roux" not in r.text
        consent = consent_of(contacts, alice, a_paul["id"])
        assert (consent["state"], consent["source"]) == ("withdrawn", "unsubscribe")
        events = stream_payloads(nats_url, SUPPRESSIONS_STREAM.name)
        assert [(s, e["address_hash"], e["reason"]) for s, e in events] == [
            ("contacts.suppressions", paul_job["recipient_hash"], "unsubscribe")]
        assert "paul" not in json.dumps(events).lower()
        # A second click is harmless.
        assert contacts.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200
        assert len(stream_payloads(nats_url, SUPPRESSIONS_STREAM.name)) == 1

        # Bob still has Paul confirmed, but no message of the campaign reaches him.
        assert consent_of(contacts, bob, b_paul["id"])["state"] == "confirmed"
        second = offer(contacts, nats_url, ["education"], {bob_id: bob}, title="Deuxième message")
        bob_second = relay(contacts, bob, second[bob_id])
        assert (bob_second["queued"], bob_second["skipped"]) == (0, {"unreachable": 1}), bob_second
        r = contacts.post(f"/contacts/{b_paul['id']}/invite", headers=bob, json={})
        assert r.status_code == 409, r.text  # confirmed already; and never an invitation to a suppressed address

        # The cap: Quentin got one message this week, a different one is skipped;
        # Rose too; nobody is queued.
        third = offer(contacts, nats_url, ["transport"], {bob_id: bob}, title="Troisième message")
        bob_third = relay(contacts, bob, third[bob_id])
        assert (bob_third["queued"], bob_third["skipped"]) == (0, {"unreachable": 2}), bob_third
        assert len(relay_jobs(nats_url)) == 3


def test_an_invitation_never_goes_to_a_suppressed_address(contacts: TestClient, nats_url: str):
    alice_id, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    _, bob = new_volunteer(contacts, "Bob Leroy", "bob@benevoles.example")
    add_contact(contacts, alice, "Paul Roux", "paul.roux@exemple.fr", ["education"])
    suggestions = offer(contacts, nats_url, ["education"], {alice_id: alice})
    relay(contacts, alice, suggestions[alice_id])
    token = link_token(relay_jobs(nats_url)[0]["unsubscribe_url"], "u")
    assert contacts.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200

    b_paul = add_contact(contacts, bob, "Paul R.", "paul.roux@exemple.fr", ["education"], consent="unknown")
    r = contacts.post(f"/contacts/{b_paul['id']}/invite", headers=bob, json={})
    assert r.status_code == 409 and "emails" in r.json()["detail"], r.text
    assert consent_of(contacts, bob, b_paul["id"])["state"] == "unknown"
    assert invitations(nats_url) == []


# -- 6. importing a file -------------------------------------------------------------------------


def test_import_a_file_report_rejected_rows_and_reupload(nats_url: str, db_url: str):
    with contacts_client(nats_url, db_url, max_import_bytes=1000) as contacts:
        _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
        add_contact(contacts, alice, "Camille Durand", "camille.durand@exemple.fr", ["education"])
        bad_row = "Jean Sans Adresse,Jean,Sans Adresse,* myContacts,Home,jean.sans.adresse@,"
        content = google_csv(
            "Louise Garnier,Louise,Garnier,* myContacts ::: Éducation,Home,louise.garnier@exemple.fr,",
            "Hugo Lefèvre,Hugo,Lefèvre,transport,,,06 12 34 56 78",
            bad_row,
            "Camille D.,Camille,D.,seniors,Home,Camille.Durand@exemple.fr,",  # already in the book: merged
        )
        assert len(content) < 1000

        r = upload(contacts, alice, content, filename="google.csv")
        assert r.status_code == 202, r.text
        import_id = r.json()["id"]
        status = finished_import(contacts, alice, import_id)
        assert status["status"] == "done", status
        assert {k: status[k] for k in ("rows", "imported", "merged", "unchanged", "rejected", "progress")} == {
            "rows": 4, "imported": 2, "merged": 1, "unchanged": 0, "rejected": 1, "progress": 1.0}
        assert status["error"] is None and status["finished_at"]
        assert contacts.get("/contacts", headers=alice).json()["total"] == 3
        louise = next(c for c in items(contacts, alice) if c["name"] == "Louise Garnier")
        assert louise["interests"] == ["education"] and louise["consent"]["email"]["state"] == "unknown"
        camille = next(c for c in items(contacts, alice) if c["name"] == "Camille Durand")
        assert camille["interests"] == ["education", "seniors"]

        r = contacts.get(f"/imports/{import_id}/rows", headers=alice, params={"outcome": "rejected"})
        assert r.status_code == 200, r.text
        assert r.json() == [{"row": 3, "outcome": "rejected", "contact_id": None, "raw": bad_row,
                             "error": r.json()[0]["error"]}]
        assert r.json()[0]["error"].startswith("email:"), r.json()
        every = contacts.get(f"/imports/{import_id}/rows", headers=alice).json()
        assert [(row["row"], row["outcome"]) for row in every] == [
            (1, "imported"), (2, "imported"), (3, "rejected"), (4, "merged")]
        assert every[0]["contact_id"] == louise["id"] and every[3]["contact_id"] == camille["id"]
        assert "raw" not in every[0] or every[0]["raw"] is None  # only rejected rows keep their text
        page = contacts.get(f"/imports/{import_id}/rows", headers=alice, params={"after": 1, "limit": 2}).json()
        assert [row["row"] for row in page] == [2, 3]

        # The same file again: every row is recognised, nothing changes.
        before = contacts.get("/contacts/export", headers=alice).json()
        r = upload(contacts, alice, content, filename="google.csv")
        assert r.status_code == 202, r.text
        status = finished_import(contacts, alice, r.json()["id"])
        assert {k: status[k] for k in ("rows", "imported", "merged", "unchanged", "rejected")} == {
            "rows": 4, "imported": 0, "merged": 0, "unchanged": 3, "rejected": 1}, status
        assert contacts.get("/contacts/export", headers=alice).json() == before

        r = upload(contacts, alice, b"", filename="empty.csv")
        assert r.status_code == 422 and ("body", "file") in loc_of(r), r.text
        assert contacts.get("/contacts", headers=alice).json()["total"] == 3


def test_an_upload_over_the_size_limit_is_refused_before_anything_is_imported(nats_url: str, db_url: str):
    """A 413 that says what the limit is and what to do, and nothing imported. A limit
    under 1 MiB is worded in its own unit, never as "the 0 MiB limit"."""
    with contacts_client(nats_url, db_url, max_import_bytes=1000) as contacts:
        _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
        add_contact(contacts, alice, "Camille Durand", "camille.durand@exemple.fr", ["education"])
        big = google_csv(*(f"Person {n},P,{n},,Home,person{n}@exemple.fr," for n in range(40)))
        assert len(big) > 1000
        r = upload(contacts, alice, big, filename="google.csv")
        assert r.status_code == 413, r.text
        assert count_rows(contacts, ImportJob) == 0
        assert contacts.get("/contacts", headers=alice).json()["total"] == 1
        detail = r.json()["detail"]
        assert detail.startswith("file:") and "split" in detail, detail
        limit = re.search(r"(\d+(?:[.,]\d+)?)\s*(bytes|B|kB|KB|KiB|MB|MiB)\b", detail)
        assert limit and float(limit.group(1).replace(",", ".")) > 0, (
            f"the message states no usable limit (max_import_bytes=1000): {detail!r}")
