"""The end-to-end journey against a running stack (tools.stack): staff
publish, the matcher suggests, a volunteer relays in one click, the email
reaches the SMTP server, and staff see the aggregate. Walked by
test_end_to_end and, with the deployment's NATS users, by
test_nats_permissions_e2e."""

from __future__ import annotations

import time

import httpx

from tests.support.servers import SmtpServer
from tests.support.volunteer_accounts import new_volunteer
from tests.support.waiting import poll
from tools.stack import Stack

CONTACTS = [
    # name, email, interests, consent
    ("Camille Durand", "camille.durand@exemple.fr", ["education", "transport"], "confirmed"),
    ("Louis Petit", "louis.petit@exemple.fr", ["seniors"], "confirmed"),
    ("Chloé Bernard", "chloe.bernard@exemple.fr", ["education"], "unknown"),
    ("Inès Moreau", "ines.moreau@exemple.fr", ["education"], "confirmed"),
]


def walk(stack: Stack, smtp_server: SmtpServer) -> None:
    cfg = stack.cfg
    staff = {"Authorization": f"Bearer {cfg.staff_token}"}
    with httpx.Client(timeout=10) as http:
        alice = new_volunteer(http, cfg.provisioning_token, "Alice Martin", "alice@benevoles.example",
                              cfg.url("contacts")).auth
        for name, email, interests, consent in CONTACTS:
            r = http.post(f"{cfg.url('contacts')}/contacts", headers=alice,
                          json={"name": name, "emails": [email], "interests": interests, "consent": consent,
                                "consent_proof": "said yes at the market" if consent == "confirmed" else None})
            assert r.status_code == 201, r.text

        published = http.post(f"{cfg.url('feed')}/messages", headers=staff, json={
            "title": "Nos écoles méritent mieux",
            "body": "Réunion publique le 12 décembre.",
            "interests": ["education"],
            "variants": {"email": {"subject": "Réunion sur nos écoles", "body": "Rendez-vous le 12 décembre à 19 h."},
                         "short": {"text": "Réunion le 12/12"}},
        })
        assert published.status_code == 201, published.text
        message_id = published.json()["id"]

        inbox = poll(lambda: http.get(f"{cfg.url('contacts')}/inbox", headers=alice).json(),
                     lambda items: items and items[0]["title"], what="the suggestion in the inbox")
        assert inbox[0]["message_id"] == message_id
        assert inbox[0]["matched_interests"] == ["education"]
        assert inbox[0]["audience_size"] == 2  # Camille and Inès: confirmed, education

        too_long = http.post(f"{cfg.url('contacts')}/inbox/{inbox[0]['suggestion_id']}/relay", headers=alice,
                             json={"note": "x" * 2001})
        assert too_long.status_code == 422 and too_long.json()["detail"][0]["loc"] == ["body", "note"]
        relay = http.post(f"{cfg.url('contacts')}/inbox/{inbox[0]['suggestion_id']}/relay", headers=alice,
                          json={"note": "Ça me tient à cœur, viens si tu peux !"})
        assert relay.status_code == 200, relay.text
        assert relay.json()["channels"]["email"]["queued"] == 2

        mails = smtp_server.recorder.wait_for(2)
        by_recipient = {m["To"].addresses[0].addr_spec: m for m in mails}
        assert set(by_recipient) == {"camille.durand@exemple.fr", "ines.moreau@exemple.fr"}
        mail = by_recipient["camille.durand@exemple.fr"]
        assert mail["From"].addresses[0].display_name == "Alice Martin"
        assert mail["From"].addresses[0].addr_spec == cfg.from_address
        assert mail["Reply-To"].addresses[0].addr_spec == "alice@benevoles.example"
        assert mail["Subject"] == "Réunion sur nos écoles"
        body = mail.get_body(("plain",)).get_content()  # the text alternative
        assert "Bonjour Camille," in body and "Rendez-vous le 12 décembre à 19 h." in body
        assert "Ça me tient à cœur, viens si tu peux !" in body  # the volunteer's own words
        assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        unsubscribe_url = mail["List-Unsubscribe"].strip("<>")
        assert unsubscribe_url.startswith(f"{cfg.url('contacts')}/u/")
        assert "camille" not in unsubscribe_url.lower()  # the link carries ids and a hash, not the address

        # a second click is the same relay: nothing more is sent
        again = http.post(f"{cfg.url('contacts')}/inbox/{inbox[0]['suggestion_id']}/relay", headers=alice)
        assert again.json()["relay_id"] == relay.json()["relay_id"]

        status = poll(lambda: http.get(f"{cfg.url('contacts')}/relays/{relay.json()['relay_id']}", headers=alice).json(),
                      lambda s: s["channels"]["email"]["delivered"] == 2, what="the relay's outcome")
        # One volunteer's relay: staff see none of it (a figure needs k = 5 volunteers).
        stats = http.get(f"{cfg.url('feed')}/messages/{message_id}", headers=staff).json()["stats"]
        assert all(cell == {"value": None, "suppressed": True} for cell in stats.values()), stats
        assert status["channels"]["email"] == {"status": "done", "queued": 2, "delivered": 2, "failed": 0,
                                               "skipped": {}}

        # Camille unsubscribes in one click (RFC 8058): the next message skips her
        assert http.post(unsubscribe_url, data={"List-Unsubscribe": "One-Click"}).status_code == 200
        second = http.post(f"{cfg.url('feed')}/messages", headers=staff, json={
            "title": "Cantine bio", "body": "…", "interests": ["education"],
            "variants": {"email": {"subject": "Cantine bio", "body": "Parlons cantine."}}}).json()
        item = poll(lambda: [i for i in http.get(f"{cfg.url('contacts')}/inbox", headers=alice).json()
                             if i["message_id"] == second["id"] and i["title"]],
                    bool, what="the second suggestion")[0]
        relay2 = http.post(f"{cfg.url('contacts')}/inbox/{item['suggestion_id']}/relay", headers=alice).json()
        assert relay2["channels"]["email"]["queued"] == 1  # her consent is withdrawn: not even a candidate
        mails = smtp_server.recorder.wait_for(3)
        assert mails[2]["To"].addresses[0].addr_spec == "ines.moreau@exemple.fr"
        camille = http.get(f"{cfg.url('contacts')}/contacts", headers=alice, params={"q": "camille"}).json()
        assert camille["items"][0]["consent"]["email"]["state"] == "withdrawn"

    time.sleep(1)
    assert len(smtp_server.recorder.messages) == 3, "an email was sent twice, or to the unsubscribed"

    # no contact's name or address in any service's log
    logs = "\n".join(p.read_text() for p in (cfg.var / "log").glob("*.log"))
    assert '"service": "dispatch-email"' in logs  # the logs are JSON lines, and were captured
    for name, email, _, _ in CONTACTS:
        assert email not in logs and name not in logs, f"PII of {name} in logs"
