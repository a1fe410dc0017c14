"""Header injection into the campaign's email (issue 11, finding 3), end to
end: every service a separate process as `make run` starts them, the
campaign's DKIM key set, a real SMTP server keeping the bytes it receives.

The attack: a contact named
``Eve\\r\\nX-Injected: yes\\r\\nContent-Type: text/html\\r\\n\\r\\n<a href=…>``,
invited, made a mail whose headers and body the volunteer chose (no
Subject, no List-Unsubscribe), from the campaign's address, DKIM-signed.

What must hold:
- every door a header value comes in by refuses a control character with a
  422 naming the field: a contact's name and addresses (create, edit), an
  import row (rejected with its raw text, the rest of the file imported),
  a volunteer's display name (provisioning), an email identity's display
  name, a campaign message's subject and title; the web forms likewise;
- past those doors (a name stored before they checked, a job forged on
  NATS with the email transit key), the dispatcher either sends a mail
  whose headers are exactly the campaign's, each once, signed and
  verifying, or refuses the job with a failed result; never a mail with a
  header the attacker wrote."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import dkim
import httpx
import nats
import pytest
from aiosmtpd.controller import Controller
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Engine, create_engine
from sqlmodel import Session

from services.contacts import book as book_ops
from services.contacts.app import create_app
from services.contacts.book import open_book
from services.contacts.crypto import MasterKey
from services.contacts.domain import Consent
from services.contacts.importing import ContactDraft
from services.contacts.store import CampaignMessage, Volunteer
from shared.blind_index import BlindIndex
from shared.catalogue import DISPATCH_RESULTS_STREAM
from shared.events import Channel, OpenedEmailJob
from shared.sealed import TransitSealer, seal_email
from tests.support.apps import contacts_settings
from tests.support.servers import RawRecorder, SmtpServer
from tests.support.streams import stream_payloads
from tests.support.volunteer_accounts import new_volunteer
from tests.support.waiting import poll
from tests.support.web_client import contact_ids, import_file, signed_in
from tools.stack import Ports, Stack, StackConfig, dev_keys, dev_transit_key, free_port

HOSTILE = "Eve\r\nX-Injected: yes\r\nContent-Type: text/html\r\n\r\n<a href=https://evil.example/>Cliquez</a>"
SELECTOR, DOMAIN = "m2026", "campagne.example"
# What the campaign's mail carries, each once, in this order, under its signature.
HEADERS = ["DKIM-Signature", "From", "Reply-To", "To", "Subject", "Date", "Message-ID", "List-Id",
           "List-Unsubscribe", "List-Unsubscribe-Post", "MIME-Version", "Content-Type"]


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    recorder, port = RawRecorder(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    yield SmtpServer("127.0.0.1", port, recorder)
    controller.stop()


@pytest.fixture(scope="module")
def dns_record(tmp_path_factory) -> tuple[Path, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("dkim") / "dkim.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, smtp, dns_record) -> Iterator[Stack]:
    key_path, _ = dns_record
    cfg = StackConfig(var=tmp_path_factory.mktemp("var"), ports=Ports.free(), start_sink=False,
                      smtp_host=smtp.host, log_format="json")
    cfg.ports.smtp = smtp.port
    with pytest.MonkeyPatch.context() as env:  # the processes inherit it: the campaign signs its mail
        env.setenv("MAILLAGE_DISPATCH_EMAIL_DKIM_SELECTOR", SELECTOR)
        env.setenv("MAILLAGE_DISPATCH_EMAIL_DKIM_KEY_PATH", str(key_path))
        with Stack(cfg) as running:
            yield running


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=15) as client:
        yield client


def refused(r: httpx.Response, *loc) -> None:
    """A 422 whose first error names ``loc`` and says why."""
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert [e["loc"] for e in errors] == [["body", *loc]], errors
    assert "control character" in errors[0]["msg"], errors


def received(smtp: SmtpServer, to: str, timeout: float = 30) -> tuple[bytes, EmailMessage]:
    recorder = smtp.recorder

    def find():
        return [(raw, msg) for raw, msg, (_, rcpt) in zip(recorder.raw, recorder.messages, recorder.envelopes, strict=True)
                if rcpt == [to]]

    (found,) = poll(find, bool, timeout=timeout, what=f"the email to {to}")
    return found


def assert_intact(raw: bytes, record: bytes, to: str, subject: str) -> EmailMessage:
    """The campaign's headers, each once, none added, signed and verifying;
    nothing of the hostile name outside the display name and the body."""
    head = raw.partition(b"\r\n\r\n")[0]
    names = [line.split(b":", 1)[0].decode() for line in head.split(b"\r\n") if line[:1] not in (b" ", b"\t")]
    assert names == HEADERS, names
    asked = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode() else b""

    assert dkim.verify(raw, dnsfunc=dns) and asked
    msg = message_from_bytes(raw, policy=policy.default)
    assert "X-Injected" not in msg
    assert msg.get_all("Content-Type") == [msg["Content-Type"]]
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert str(msg["Subject"]) == subject
    assert str(msg["List-Unsubscribe"]).startswith("<http") and msg["List-Unsubscribe-Post"]
    (recipient,) = msg["To"].addresses
    assert recipient.addr_spec == to
    # the name stays a name: on one line, each line break a space
    assert recipient.display_name == ("Eve  X-Injected: yes  Content-Type: text/html    "
                                      "<a href=https://evil.example/>Cliquez</a>")
    # the body greets the first name only: the rest of the hostile name is nowhere else
    for part in msg.iter_parts():
        assert "Bonjour Eve," in part.get_content() and "evil.example" not in part.get_content()
    return msg


# -- every door refuses ---------------------------------------------------------------------------------


def test_a_hostile_value_is_refused_at_every_door_with_the_field_named(stack, http):
    cfg = stack.cfg
    contacts, feed = cfg.url("contacts"), cfg.url("feed")
    provisioning = {"Authorization": f"Bearer {cfg.provisioning_token}"}
    alice = new_volunteer(http, cfg.provisioning_token, "Alice Martin", "alice@benevoles.example", contacts).auth

    # a contact's name and addresses, at creation and by an edit
    refused(http.post(f"{contacts}/contacts", headers=alice, json={"name": HOSTILE, "emails": ["eve@exemple.fr"]}),
            "name")
    for separator in ("\u2028", "\x85", "\t", "\x00"):
        refused(http.post(f"{contacts}/contacts", headers=alice,
                          json={"name": f"Eve{separator}Bcc: all@victims.example", "emails": ["eve@exemple.fr"]}),
                "name")
    r = http.post(f"{contacts}/contacts", headers=alice,
                  json={"name": "Eve", "emails": ["eve@exemple.fr\r\nBcc: all@victims.example"]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "emails", 0], r.text
    r = http.post(f"{contacts}/contacts", headers=alice, json={"name": "Eve", "emails": ["eve@exemple.fr"]})
    assert r.status_code == 201, r.text
    eve = r.json()["id"]
    refused(http.patch(f"{contacts}/contacts/{eve}", headers=alice, json={"name": HOSTILE}), "name")
    assert http.get(f"{contacts}/contacts/{eve}", headers=alice).json()["name"] == "Eve"

    # an import: that row rejected with its text and the field, the rest of the file in the book
    rows = io.StringIO()
    csv.writer(rows).writerows([["name", "email"], ["Ana Dupont", "ana@exemple.fr"], [HOSTILE, "eve2@exemple.fr"],
                                ["Zoé Ruiz", "zoe@exemple.fr"]])
    r = http.post(f"{contacts}/imports", headers=alice,
                  files={"file": ("contacts.csv", rows.getvalue().encode(), "text/csv")})
    assert r.status_code == 202, r.text
    import_id = r.json()["id"]
    job = poll(lambda: http.get(f"{contacts}/imports/{import_id}", headers=alice).json(),
               lambda s: s["status"] != "running", what="the import")
    assert (job["status"], job["imported"], job["rejected"]) == ("done", 2, 1), job
    (row,) = http.get(f"{contacts}/imports/{import_id}/rows", headers=alice,
                      params={"outcome": "rejected"}).json()
    assert row["row"] == 2 and row["error"].startswith("name: must not contain a control character (found U+000D")
    assert "X-Injected: yes" in row["raw"]
    names = {c["name"] for c in http.get(f"{contacts}/contacts", headers=alice, params={"limit": 100}).json()["items"]}
    assert names == {"Eve", "Ana Dupont", "Zoé Ruiz"}

    # a volunteer's display name (From: and Reply-To: of their relays), by provisioning
    for route in ("/admin/invites", "/admin/volunteers"):
        refused(http.post(f"{contacts}{route}", headers=provisioning,
                          json={"display_name": HOSTILE, "email": "eve.volunteer@benevoles.example"}), "display_name")
    # the display name of a volunteer's own email identity (From: through their server)
    refused(http.put(f"{contacts}/me/networks/email", headers=alice, json={
        "host": "smtp.perso.example", "port": 587, "security": "starttls", "username": "alice",
        "password": "app-password-1234", "from_address": "alice@perso.example", "display_name": HOSTILE}),
        "display_name")
    # a campaign message's subject (Subject:) and title
    staff = {"Authorization": f"Bearer {cfg.staff_token}"}
    message = {"title": "Nos écoles", "body": "Réunion publique.", "interests": ["education"],
               "variants": {"email": {"subject": "Réunion sur nos écoles", "body": "Rendez-vous."}}}
    refused(http.post(f"{feed}/messages", headers=staff,
                      json={**message, "variants": {"email": {"subject": HOSTILE, "body": "Rendez-vous."}}}),
            "variants", "email", "subject")
    refused(http.post(f"{feed}/messages", headers=staff, json={**message, "title": HOSTILE}), "title")


# -- past the doors -------------------------------------------------------------------------------------


def store(stack: Stack) -> Engine:
    return create_engine(f"sqlite:///{stack.cfg.var.resolve()}/contacts.db")


def legacy_display_name(stack: Stack, volunteer_id: str, name: str) -> None:
    """A volunteer's name as provisioning stored it before it was checked."""
    engine = store(stack)
    with Session(engine) as session:
        vol = session.get(Volunteer, volunteer_id)
        vol.display_name = name
        session.add(vol)
        session.commit()
    engine.dispose()


def legacy_contact(stack: Stack, volunteer_id: str, email: str, consent: Consent) -> None:
    """A contact written into the store as an import did before names were
    checked: the hostile name sealed in the volunteer's book."""
    keys = dev_keys(stack.cfg.var)
    engine = store(stack)
    with Session(engine) as session:
        book = open_book(session, MasterKey.from_setting(keys["MAILLAGE_CONTACTS_MASTER_KEY"]),
                         BlindIndex(base64.b64decode(keys["MAILLAGE_CONTACTS_ADDRESS_INDEX_KEY"])),
                         session.get(Volunteer, volunteer_id))
        draft = ContactDraft(display_name=HOSTILE, emails=(email,), interests=("education",))
        book_ops.create_contact(session, book, draft, consent, "said yes at the market, 12/11")
        session.commit()
    engine.dispose()


def test_a_name_stored_before_the_check_makes_an_invitation_and_a_relay_with_intact_headers(
        stack, smtp, dns_record, http):
    """The writer holds on its own: a stored hostile name, invited and then
    relayed to, gives the campaign's headers and nothing else."""
    cfg = stack.cfg
    contacts, staff = cfg.url("contacts"), {"Authorization": f"Bearer {cfg.staff_token}"}
    _, record = dns_record
    made = new_volunteer(http, cfg.provisioning_token, "Bob Nguyen", "bob@benevoles.example", contacts)
    bob = made.auth
    legacy_display_name(stack, made.volunteer_id, "Bob\r\nX-Injected: yes\r\nBcc: all@victims.example")
    legacy_contact(stack, made.volunteer_id, "eve.invited@exemple.fr", Consent.unknown)
    legacy_contact(stack, made.volunteer_id, "eve.confirmed@exemple.fr", Consent.confirmed)
    by_email = {c["emails"][0]: c for c in http.get(f"{contacts}/contacts", headers=bob).json()["items"]}
    assert by_email["eve.invited@exemple.fr"]["name"] == HOSTILE  # the book keeps what was written

    r = http.post(f"{contacts}/contacts/{by_email['eve.invited@exemple.fr']['id']}/invite", headers=bob, json={})
    assert r.status_code == 200, r.text
    raw, _ = received(smtp, "eve.invited@exemple.fr")
    bob_name = "Bob  X-Injected: yes  Bcc: all@victims.example"  # the volunteer's stored name, on one line
    msg = assert_intact(raw, record, "eve.invited@exemple.fr",
                        f"{bob_name} vous invite à suivre la campagne / invites you to follow la campagne")
    assert [(a.display_name, a.addr_spec) for a in msg["From"].addresses] == [(bob_name, "relais@campagne.example")]
    assert [(a.display_name, a.addr_spec) for a in msg["Reply-To"].addresses] == [
        (bob_name, "bob@benevoles.example")]
    assert "Bcc" not in msg and smtp.recorder.envelopes[-1][1] == ["eve.invited@exemple.fr"]

    # a relay to the confirmed one: another confirmed contact, added through the API, publishes the profile
    r = http.post(f"{contacts}/contacts", headers=bob, json={
        "name": "Ana Dupont", "emails": ["ana.bob@exemple.fr"], "interests": ["education"],
        "consent": "confirmed", "consent_proof": "said yes at the market, 12/11"})
    assert r.status_code == 201, r.text
    r = http.post(f"{cfg.url('feed')}/messages", headers=staff, json={
        "title": "Nos écoles méritent mieux", "body": "Réunion publique le 12 décembre.", "interests": ["education"],
        "variants": {"email": {"subject": "Réunion sur nos écoles", "body": "Rendez-vous le 12 décembre."}}})
    assert r.status_code == 201, r.text
    suggestion = poll(lambda: http.get(f"{contacts}/inbox", headers=bob).json(), bool, what="Bob's suggestion")[0]
    sid = suggestion["suggestion_id"]
    # the message as contacts stored it before subjects were checked
    engine = store(stack)
    with Session(engine) as session:
        message = session.get(CampaignMessage, suggestion["message_id"])
        message.email_subject = "Réunion sur nos écoles\r\nX-Injected: yes"
        session.add(message)
        session.commit()
    engine.dispose()
    r = http.post(f"{contacts}/inbox/{sid}/relay", headers=bob)
    assert r.status_code == 200 and r.json()["channels"]["email"]["queued"] == 2, r.text
    raw, _ = received(smtp, "eve.confirmed@exemple.fr")
    msg = assert_intact(raw, record, "eve.confirmed@exemple.fr", "Réunion sur nos écoles  X-Injected: yes")
    assert msg["From"].addresses[0].display_name == bob_name
    ana = message_from_bytes(received(smtp, "ana.bob@exemple.fr")[0], policy=policy.default)
    assert ana["To"].addresses[0].display_name == "Ana Dupont"


def test_a_job_forged_on_nats_with_the_email_key_is_refused_not_sent(stack, smtp):
    """What contacts would publish if it were made to: the dispatcher
    re-validates the sealed content (a header value with a control
    character: failed, unreadable) and the writer refuses what no header
    can hold (a job id that would break the Message-ID: failed,
    unsafe_header). Neither reaches the SMTP server; both are reported."""
    cfg = stack.cfg
    sealer = TransitSealer.from_secret(Channel.email, SecretStr(dev_transit_key(cfg.var, "email")))
    fields = dict(relay_id="forged-relay", message_id="forged-message", volunteer_id="forged-volunteer",
                  recipient_hash="f" * 64, sender_name="Alice Martin", reply_to="alice@benevoles.example",
                  recipient_name="Eve", subject="Réunion", body_text="Rendez-vous.",
                  unsubscribe_url=f"{cfg.url('contacts')}/u/forged", note=None, smtp_account=None, kind="relay")
    forged = {
        "forged-name": OpenedEmailJob.model_construct(**{**fields, "job_id": "forged-name", "recipient_name": HOSTILE,
                                                         "recipient_email": "eve.forged1@exemple.fr"}),
        "forged-subject": OpenedEmailJob.model_construct(**{**fields, "job_id": "forged-subject", "subject": HOSTILE,
                                                            "recipient_email": "eve.forged2@exemple.fr"}),
        "forged <id@evil.example>, x": OpenedEmailJob.model_construct(**{
            **fields, "job_id": "forged <id@evil.example>, x", "recipient_email": "eve.forged3@exemple.fr"}),
    }

    async def publish() -> None:
        nc = await nats.connect(f"nats://127.0.0.1:{cfg.ports.nats}")
        try:
            js = nc.jetstream()
            for n, opened in enumerate(forged.values()):
                job = seal_email(opened, sealer)
                await js.publish("dispatch.email.jobs", job.model_dump_json().encode(),
                                 headers={"Nats-Msg-Id": f"forged-{n}"})
        finally:
            await nc.close()

    asyncio.run(publish())
    url = f"nats://127.0.0.1:{cfg.ports.nats}"
    results = poll(lambda: {p["job_id"]: (p["status"], p["reason"])
                            for _, p in stream_payloads(url, DISPATCH_RESULTS_STREAM.name)
                            if p["job_id"] in forged},
                   lambda found: len(found) == len(forged), what="a result for every forged job")
    assert results == {"forged-name": ("failed", "unreadable"), "forged-subject": ("failed", "unreadable"),
                       "forged <id@evil.example>, x": ("failed", "unsafe_header")}
    sent_to = {rcpt for _, rcpts in smtp.recorder.envelopes for rcpt in rcpts}
    assert not sent_to & {"eve.forged1@exemple.fr", "eve.forged2@exemple.fr", "eve.forged3@exemple.fr"}
    logs = "\n".join(p.read_text() for p in (cfg.var / "log").glob("dispatch-email*.log"))
    unsafe = [json.loads(line) for line in logs.splitlines() if '"email.unsafe_header"' in line]
    assert [(e["header"], e["job_id"]) for e in unsafe] == [("Message-ID", "forged <id@evil.example>, x")]
    assert "eve.forged" not in logs  # the log names the job and the header, never an address


# -- the volunteer's web pages --------------------------------------------------------------------------


def test_the_web_forms_refuse_the_hostile_name_naming_the_field(nats_url, tmp_path):
    """The same doors through the thin client: the contact form answers 422
    with the page and the field named; an imported row is shown refused,
    with its text, beside the rows that went in."""
    app = create_app(contacts_settings(nats_url, f"sqlite:///{tmp_path / 'contacts.db'}"))
    with TestClient(app, base_url="https://testserver") as client:
        browser = signed_in(client)
        rows = io.StringIO()
        csv.writer(rows).writerows([["First Name", "Last Name", "E-mail Address"],
                                    ["Camille", "Durand", "camille.durand@exemple.fr"],
                                    ["Eve", HOSTILE, "eve@exemple.fr"]])
        report = browser.get(import_file(browser, rows.getvalue())).text
        assert "2 lignes : 1 importées, 0 fusionnées, 0 inchangées, 1 refusées" in report, report
        assert "name: must not contain a control character (found U+000D" in report
        assert "X-Injected: yes" in report  # the rejected row keeps its text, shown as text
        assert "<a href=https://evil.example/>" not in report and "&lt;a href=https://evil.example/&gt;" in report
        ids = contact_ids(browser)
        assert set(ids) == {"Camille Durand"}
        camille = f"/app/contacts/{ids['Camille Durand']}"
        bad = browser.post_form(camille, {"name": HOSTILE, "emails": "camille.durand@exemple.fr"}, from_page=camille)
        assert bad.status_code == 422 and "name" in bad.text and "control character" in bad.text
        assert "X-Injected" not in browser.get("/app/contacts").text
        assert 'value="Camille Durand"' in browser.get(camille).text
