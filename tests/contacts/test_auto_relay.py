"""Auto-relay through the real contacts app (lifespan running, a real
nats-server), on SQLite and on PostgreSQL, and its web form.

What is proven here:
- the choice is off by default, is a subset of the shared campaign
  interests (a 422 names ``auto_relay_interests`` otherwise), and sharing
  an interest no more drops it from the choice;
- a suggestion whose matched interests meet the choice is relayed by
  contacts itself, under the click's rules (only confirmed contacts), once:
  a suggestion delivered again relays nothing twice; the history row says
  it was automatic; a suggestion on another interest waits for a click;
- the interests page saves the choice with its CSRF token and refuses an
  unshared interest, naming the field.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

import nats
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from services.contacts.app import create_app
from services.contacts.relay.auto import AUTO_RELAYS
from services.contacts.store import Relay, TaxonomyTerm
from tests.support.apps import contacts_settings
from tests.support.contacts_api import offer, relay_jobs
from tests.support.http_api import add_contact, new_volunteer
from tests.support.waiting import poll
from tests.support.web_client import signed_in

TAXONOMY = ("education", "seniors", "transport")


def seed_taxonomy(app) -> None:
    """What feed's taxonomy event leaves in contacts."""
    with Session(app.state.engine) as session:
        session.add_all(TaxonomyTerm(name=n, label_fr=n.title(), label_en=n.title()) for n in TAXONOMY)
        session.commit()


def put_profile(contacts: TestClient, auth: dict[str, str], **body: Any):
    return contacts.put("/me/profile", headers=auth, json={"shared_interests": None, **body})


def field_of(answer) -> list[str]:
    return [d["loc"][1] for d in answer.json()["detail"]]


def test_the_choice_is_a_subset_of_the_shared_campaign_interests(contacts: TestClient):
    seed_taxonomy(contacts.app)
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    assert contacts.get("/me/profile", headers=alice).json()["auto_relay_interests"] == []  # off by default

    r = put_profile(contacts, alice, auto_relay_interests=["education"])
    assert r.status_code == 200, r.text
    assert r.json()["auto_relay_interests"] == ["education"]
    assert contacts.get("/me/profile", headers=alice).json()["auto_relay_interests"] == ["education"]

    for body in ({"auto_relay_interests": ["jardinage"]},  # not a campaign interest
                 {"shared_interests": ["transport"], "auto_relay_interests": ["education"]},  # not shared
                 {"auto_relay_interests": ["Pas un mot!"]}):  # not an interest's name at all
        refused = put_profile(contacts, alice, **body)
        assert refused.status_code == 422 and field_of(refused) == ["auto_relay_interests"], refused.text
    assert contacts.get("/me/profile", headers=alice).json()["auto_relay_interests"] == ["education"]

    # omitted, the choice stays, as far as it is still shared
    assert put_profile(contacts, alice, shared_interests=["education", "seniors"]).json()[
        "auto_relay_interests"] == ["education"]
    assert put_profile(contacts, alice, shared_interests=["seniors"]).json()["auto_relay_interests"] == []
    assert put_profile(contacts, alice, auto_relay_interests=["seniors", "transport"]).json()[
        "auto_relay_interests"] == ["seniors", "transport"]
    assert put_profile(contacts, alice, auto_relay_interests=[]).json()["auto_relay_interests"] == []  # off


def suggest_again(nats_url: str, suggestion: dict[str, Any]) -> None:
    """The same suggestion once more, as a redelivery would bring it (a new
    message id, so JetStream's dedupe does not drop it before contacts)."""

    async def publish() -> None:
        nc = await nats.connect(nats_url)
        try:
            await nc.jetstream().publish(f"matcher.suggestions.{suggestion['volunteer_id']}",
                                         json.dumps(suggestion).encode(), headers={"Nats-Msg-Id": uuid.uuid4().hex})
        finally:
            await nc.close()

    asyncio.run(publish())


def relay_of(contacts: TestClient, auth: dict[str, str], suggestion_id: str) -> str | None:
    entry = [e for e in contacts.get("/inbox", headers=auth).json() if e["suggestion_id"] == suggestion_id]
    return entry[0]["relay_id"] if entry else None


def test_a_chosen_interest_is_relayed_without_a_click_once(contacts: TestClient, nats_url: str):
    seed_taxonomy(contacts.app)
    alice_id, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    add_contact(contacts, alice, "Camille Durand", "camille.durand@exemple.fr", ["education"])
    add_contact(contacts, alice, "Chloé Bernard", "chloe.bernard@exemple.fr", ["education"], consent="unknown")
    add_contact(contacts, alice, "Louis Petit", "louis.petit@exemple.fr", ["transport"])
    assert put_profile(contacts, alice, auto_relay_interests=["education"]).status_code == 200
    relayed_before = AUTO_RELAYS.labels("relayed")._value.get()

    school = offer(contacts, nats_url, ["education"], {alice_id: alice}, title="Nos écoles")[alice_id]
    rid = poll(lambda: relay_of(contacts, alice, school), bool, what="the automatic relay")
    jobs = poll(lambda: relay_jobs(nats_url), lambda j: len(j) == 1, what="the relay's email job")
    assert jobs[0]["relay_id"] == rid  # Camille only: Chloé has not said yes, Louis is about transport
    # counted once the handler returns, which is after the jobs are on NATS
    poll(lambda: AUTO_RELAYS.labels("relayed")._value.get(), lambda v: v == relayed_before + 1,
         what="the automatic relay counted")
    assert AUTO_RELAYS.labels("relayed")._value.get() == relayed_before + 1
    with Session(contacts.app.state.engine) as session:
        assert session.get(Relay, rid).automatic  # the history shows it as automatic

    # the suggestion delivered again: the same relay, no second email
    suggest_again(nats_url, {"suggestion_id": school, "volunteer_id": alice_id,
                             "message_id": jobs[0]["message_id"], "matched_interests": ["education"],
                             "audience_size": 1})
    poll(lambda: AUTO_RELAYS.labels("already")._value.get(), bool, what="the repeated suggestion handled")
    assert len(relay_jobs(nats_url)) == 1 and relay_of(contacts, alice, school) == rid

    # another interest: it waits in the inbox for a click
    bus = offer(contacts, nats_url, ["transport"], {alice_id: alice}, title="Le tram")[alice_id]
    assert relay_of(contacts, alice, bus) is None
    assert len(relay_jobs(nats_url)) == 1
    clicked = contacts.post(f"/inbox/{bus}/relay", headers=alice)
    assert clicked.status_code == 200 and clicked.json()["channels"]["email"]["queued"] == 1
    with Session(contacts.app.state.engine) as session:
        assert not session.get(Relay, clicked.json()["relay_id"]).automatic


@pytest.fixture
def web(nats_url, tmp_path):
    app = create_app(contacts_settings(nats_url, f"sqlite:///{tmp_path / 'contacts.db'}"))
    with TestClient(app, base_url="https://testserver") as http:
        seed_taxonomy(app)
        yield http


def test_the_interests_page_saves_the_auto_relay_choice(web: TestClient):
    browser = signed_in(web)
    page = browser.get("/app/interests").text
    assert 'name="auto_relay" value="education"' in page and 'name="auto_relay" value="education" ' \
        'aria-describedby="auto-help" checked' not in page  # off by default, explained
    saved = browser.post_form("/app/interests", {"share": "all", "auto_relay": ["education"]},
                              from_page="/app/interests")
    assert saved.status_code == 303, saved.text
    page = browser.get("/app/interests").text
    assert re.search(r'name="auto_relay" value="education" aria-describedby="auto-help" checked', page)
    assert not re.search(r'name="auto_relay" value="transport" aria-describedby="auto-help" checked', page)

    refused = browser.post_form("/app/interests", {"share": "some", "interests": ["transport"],
                                                    "auto_relay": ["education"]}, from_page="/app/interests")
    assert refused.status_code == 422 and "auto_relay_interests" in refused.text
