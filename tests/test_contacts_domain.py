"""The contact book's rules, without a broker or a database."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.contacts import domain
from services.contacts.domain import Consent, ContactIn, ContactView
from shared.events import Channel


def view(cid: str, consent: Consent, *interests: str) -> ContactView:
    return ContactView(cid, frozenset(interests), consent)


BOOK = [
    view("c1", Consent.confirmed, "education", "transport"),
    view("c2", Consent.confirmed, "seniors"),
    view("c3", Consent.unknown, "education"),
    view("c4", Consent.withdrawn, "education"),
    view("c5", Consent.invited, "transport"),
]


def test_profile_counts_only_confirmed_contacts():
    assert domain.interest_profile(BOOK, None) == {
        "education": {Channel.email: 1},
        "seniors": {Channel.email: 1},
        "transport": {Channel.email: 1},
    }


def test_profile_shows_only_the_interests_the_volunteer_shares():
    assert domain.interest_profile(BOOK, {"seniors"}) == {"seniors": {Channel.email: 1}}
    assert domain.interest_profile(BOOK, set()) == {}


def test_relay_reaches_confirmed_contacts_the_message_fits():
    assert [c.contact_id for c in domain.relay_recipients(BOOK, ["education"])] == ["c1"]
    assert [c.contact_id for c in domain.relay_recipients(BOOK, [])] == ["c1", "c2"]
    assert domain.relay_recipients(BOOK, ["health"]) == []


def test_relay_and_job_ids_are_stable_so_a_second_click_sends_nothing_new():
    r = domain.relay_id("s1")
    assert r == domain.relay_id("s1") != domain.relay_id("s2")
    assert domain.job_id(r, "c1", Channel.email) == domain.job_id(r, "c1", Channel.email)
    assert domain.job_id(r, "c1", Channel.email) != domain.job_id(r, "c2", Channel.email)


def test_email_normalization_lowercases():
    assert domain.normalize_email(" Camille.Durand@Exemple.FR ") == "camille.durand@exemple.fr"


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"name": "A", "email": "nope"}, "email"),
        ({"name": "", "email": "a@b.fr"}, "name"),
        ({"name": "A", "email": "a@b.fr", "interests": ["Not An Interest"]}, "interests"),
        ({"name": "A", "email": "a@b.fr", "consent": "maybe"}, "consent"),
    ],
)
def test_bad_contact_input_names_the_field(payload, field):
    with pytest.raises(ValidationError) as err:
        ContactIn.model_validate(payload)
    assert err.value.errors()[0]["loc"][0] == field
