"""Contacts follows the campaign: a withdrawn or expired message leaves the
inbox and cannot be relayed; the taxonomy feed publishes is the vocabulary
of interests; the profile tells the matcher where contacts live."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from services.contacts.app import create_app
from shared.catalogue import FEED, MATCHER, MESSAGE_PUBLISHED, MESSAGE_WITHDRAWN, SUGGESTION_MADE, TAXONOMY_PUBLISHED
from shared.events import (
    MessagePublished,
    MessageWithdrawn,
    Suggestion,
    Taxonomy,
    TaxonomyTerm,
    Variants,
    utcnow,
)
from shared.messaging import Bus
from tests.support.apps import PROVISIONING_TOKEN, contacts_settings
from tests.support.volunteer_accounts import new_volunteer
from tests.support.waiting import poll


@pytest.fixture
def contacts(nats_url, db_url):
    with TestClient(create_app(contacts_settings(nats_url, db_url))) as client:
        yield client


def publish(nats_url: str, service: str, spec, event, *tokens: str) -> None:
    async def go() -> None:
        bus = Bus(service, nats_url)
        await bus.connect()
        await bus.publish(spec, event, *tokens, msg_id=event.event_id)
        await bus.broker.stop()

    asyncio.run(go())


def volunteer(contacts: TestClient, name: str = "Alice") -> tuple[str, dict]:
    made = new_volunteer(contacts, PROVISIONING_TOKEN, name, f"{name.lower()}@benevoles.example")
    return made.volunteer_id, made.auth


def message(message_id: str, **more) -> MessagePublished:
    return MessagePublished(message_id=message_id, title="Écoles", body="…", interests=("education",),
                            variants=Variants.model_validate({"email": {"subject": "S", "body": "B"}}), **more)


def suggest(nats_url: str, vol_id: str, message_id: str, score: float = 1.0) -> None:
    publish(nats_url, MATCHER, SUGGESTION_MADE, Suggestion(
        suggestion_id=f"s-{message_id}", volunteer_id=vol_id, message_id=message_id,
        matched_interests=("education",), audience_size=1, score=score), vol_id)


def test_withdrawn_and_expired_messages_leave_the_inbox_and_cannot_be_relayed(contacts, nats_url):
    vol_id, alice = volunteer(contacts)
    contacts.post("/contacts", headers=alice, json={"name": "Ana", "emails": ["ana@exemple.fr"],
                                                    "interests": ["education"], "consent": "confirmed",
                                                    "consent_proof": "oui, au marché"})
    publish(nats_url, FEED, MESSAGE_PUBLISHED, message("m-keep", priority=1))
    publish(nats_url, FEED, MESSAGE_PUBLISHED, message("m-urgent", priority=3))
    publish(nats_url, FEED, MESSAGE_PUBLISHED, message("m-old", expires_at=utcnow() - timedelta(minutes=1)))
    for mid, score in (("m-keep", 1.0), ("m-urgent", 9.0), ("m-old", 5.0)):
        suggest(nats_url, vol_id, mid, score)
    inbox = poll(lambda: contacts.get("/inbox", headers=alice).json(),
                 lambda items: len([i for i in items if i["title"]]) == 2, what="two live suggestions")
    assert [i["message_id"] for i in inbox] == ["m-urgent", "m-keep"]  # by score; the expired one is gone

    publish(nats_url, FEED, MESSAGE_WITHDRAWN, MessageWithdrawn(message_id="m-urgent"))
    poll(lambda: contacts.get("/inbox", headers=alice).json(),
         lambda items: [i["message_id"] for i in items] == ["m-keep"], what="the withdrawal")
    for mid in ("m-urgent", "m-old"):
        r = contacts.post(f"/inbox/s-{mid}/relay", headers=alice)
        assert r.status_code == 409 and "withdrew" in r.json()["detail"]
    assert contacts.post("/inbox/s-m-keep/relay", headers=alice).json()["channels"]["email"]["queued"] == 1


def test_the_taxonomy_is_the_vocabulary_of_interests(contacts, nats_url, tmp_path):
    _, alice = volunteer(contacts)
    publish(nats_url, FEED, TAXONOMY_PUBLISHED, Taxonomy(terms=(
        TaxonomyTerm(name="education", label_fr="Éducation", label_en="Education"),
        TaxonomyTerm(name="transport", label_fr="Transports", label_en="Transport"))))
    terms = poll(lambda: contacts.get("/taxonomy", headers=alice).json(), lambda t: len(t) == 2, what="taxonomy")
    assert terms[0] == {"name": "education", "label_fr": "Éducation", "label_en": "Education"}

    r = contacts.post("/contacts", headers=alice, json={"name": "Ana", "emails": ["ana@exemple.fr"],
                                                        "interests": ["education", "astrologie"]})
    assert r.status_code == 422 and "astrologie" in r.text and r.json()["detail"][0]["loc"] == ["body", "interests"]
    r = contacts.post("/contacts", headers=alice, json={"name": "Ana", "emails": ["ana@exemple.fr"],
                                                        "interests": ["education", "local:lyon"],
                                                        "tags": ["astrologie"]})
    assert r.status_code == 201 and r.json()["tags"] == ["astrologie"]

    # a file's categories outside the taxonomy become the volunteer's own tags
    csv = "First Name,Last Name,E-mail Address,Categories\nBen,Roux,ben@exemple.fr,transport;jardinage\n"
    job = contacts.post("/imports", headers=alice, files={"file": ("c.csv", csv.encode())}).json()
    poll(lambda: contacts.get(f"/imports/{job['id']}", headers=alice).json(), lambda j: j["status"] == "done")
    ben = contacts.get("/contacts", headers=alice, params={"q": "ben"}).json()["items"][0]
    assert ben["interests"] == ["transport"] and ben["tags"] == ["jardinage"]


def test_the_profile_counts_confirmed_contacts_per_region_and_locale(contacts):
    _, alice = volunteer(contacts)
    for n, (region, locale, consent) in enumerate([("ara", "fr-FR", "confirmed"), ("ara", "en-GB", "confirmed"),
                                                   ("idf", "fr-FR", "confirmed"), ("bre", "fr-FR", "unknown")]):
        contacts.post("/contacts", headers=alice, json={
            "name": f"C{n}", "emails": [f"c{n}@exemple.fr"], "region": region, "locale": locale,
            "interests": ["education"], "consent": consent, "consent_proof": "oui" if consent == "confirmed" else None})
    profile = contacts.get("/me/profile", headers=alice).json()
    assert profile["regions"] == {"ara": 2, "idf": 1}
    assert profile["locales"] == {"en-GB": 1, "fr-FR": 2}
