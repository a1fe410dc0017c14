"""Auto-relay across the whole system, every service a separate process as
`make run` starts them: a volunteer turns auto-relay on for "education";
staff publish an education message and its email reaches the real SMTP
server without any click, once; a transport message waits for a click."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.volunteer_accounts import new_volunteer
from tests.support.waiting import poll
from tools.stack import Ports, Stack, StackConfig

TERMS = [{"name": "education", "label_fr": "Éducation", "label_en": "Education"},
         {"name": "transport", "label_fr": "Transports", "label_en": "Transport"}]


@pytest.fixture
def stack(tmp_path: Path, smtp_server):
    cfg = StackConfig(var=tmp_path / "var", ports=Ports.free(), start_sink=False,
                      smtp_host=smtp_server.host, log_format="json")
    cfg.ports.smtp = smtp_server.port
    with Stack(cfg) as running:
        yield running


def test_a_chosen_interest_reaches_the_mailbox_without_a_click_once(stack, smtp_server):
    cfg = stack.cfg
    contacts, feed = cfg.url("contacts"), cfg.url("feed")
    staff = {"Authorization": f"Bearer {cfg.staff_token}"}
    with httpx.Client(timeout=10) as http:
        assert http.put(f"{feed}/taxonomy", headers=staff, json={"terms": TERMS}).status_code == 200
        alice = new_volunteer(http, cfg.provisioning_token, "Alice Martin", "alice@benevoles.example",
                              contacts).auth
        for name, email, interests in (("Camille Durand", "camille.durand@exemple.fr", ["education", "transport"]),
                                       ("Inès Moreau", "ines.moreau@exemple.fr", ["education"])):
            r = http.post(f"{contacts}/contacts", headers=alice, json={
                "name": name, "emails": [email], "interests": interests, "consent": "confirmed",
                "consent_proof": "said yes at the market"})
            assert r.status_code == 201, r.text
        poll(lambda: http.get(f"{contacts}/taxonomy", headers=alice).json(), lambda t: len(t) == 2,
             what="the taxonomy in contacts")
        chose = http.put(f"{contacts}/me/profile", headers=alice,
                         json={"shared_interests": None, "auto_relay_interests": ["education"]})
        assert chose.status_code == 200 and chose.json()["auto_relay_interests"] == ["education"], chose.text

        school = http.post(f"{feed}/messages", headers=staff, json={
            "title": "Nos écoles méritent mieux", "body": "Réunion publique le 12 décembre.",
            "interests": ["education"],
            "variants": {"email": {"subject": "Réunion sur nos écoles", "body": "Rendez-vous le 12 décembre."}}})
        assert school.status_code == 201, school.text

        mails = smtp_server.recorder.wait_for(2)  # nobody clicked
        assert {m["To"].addresses[0].addr_spec for m in mails} == {"camille.durand@exemple.fr",
                                                                   "ines.moreau@exemple.fr"}
        assert all(m["Subject"] == "Réunion sur nos écoles" for m in mails)
        entry = [e for e in http.get(f"{contacts}/inbox", headers=alice).json()
                 if e["message_id"] == school.json()["id"]][0]
        assert entry["relay_id"]  # the inbox shows it relayed

        tram = http.post(f"{feed}/messages", headers=staff, json={
            "title": "Le tram de nuit", "body": "…", "interests": ["transport"],
            "variants": {"email": {"subject": "Le tram de nuit", "body": "Parlons du tram."}}})
        assert tram.status_code == 201, tram.text
        waiting = poll(lambda: [e for e in http.get(f"{contacts}/inbox", headers=alice).json()
                                if e["message_id"] == tram.json()["id"] and e["title"]],
                       bool, what="the transport suggestion")
        assert waiting[0]["relay_id"] is None  # not chosen: it waits for a click

        status = poll(lambda: http.get(f"{contacts}/relays/{entry['relay_id']}", headers=alice).json(),
                      lambda s: s["channels"]["email"]["delivered"] == 2, what="the relay's outcome")
        assert status["channels"]["email"]["queued"] == 2

    time.sleep(2)  # time for a duplicate or a wrong auto-relay to land
    assert len(smtp_server.recorder.messages) == 2, "an email was sent twice, or without being chosen"
