"""The contact book's rules, without a broker or a database."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.contacts import domain
from services.contacts.domain import Consent, ConsentSource, ContactIn, ContactView
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


@pytest.mark.parametrize("current, target, source, proof, expected", [
    (Consent.unknown, Consent.invited, ConsentSource.invitation, None, Consent.invited),
    (Consent.unknown, Consent.confirmed, ConsentSource.volunteer, "oui au marché, 12/11", Consent.confirmed),
    (Consent.invited, Consent.confirmed, ConsentSource.contact, None, Consent.confirmed),
    (Consent.confirmed, Consent.withdrawn, ConsentSource.volunteer, None, Consent.withdrawn),
    (Consent.unknown, Consent.withdrawn, ConsentSource.unsubscribe, None, Consent.withdrawn),
    (Consent.withdrawn, Consent.confirmed, ConsentSource.contact, None, Consent.confirmed),
])
def test_allowed_consent_transitions(current, target, source, proof, expected):
    assert domain.consent_transition(current, target, source, proof) is expected


@pytest.mark.parametrize("current, target, source, proof, why", [
    (Consent.withdrawn, Consent.confirmed, ConsentSource.volunteer, "sure", "only the contact"),
    (Consent.unknown, Consent.confirmed, ConsentSource.volunteer, None, "proof"),
    (Consent.unknown, Consent.confirmed, ConsentSource.volunteer, "  ", "proof"),
    (Consent.confirmed, Consent.invited, ConsentSource.invitation, None, "cannot go"),
    (Consent.invited, Consent.invited, ConsentSource.invitation, None, None),
    (Consent.unknown, Consent.invited, ConsentSource.volunteer, None, "cannot go"),
])
def test_refused_consent_transitions_say_why(current, target, source, proof, why):
    if why is None:  # staying put is not an error
        assert domain.consent_transition(current, target, source, proof) is current
        return
    with pytest.raises(domain.ConsentRuleError, match=why):
        domain.consent_transition(current, target, source, proof)


@pytest.mark.parametrize("history, expected", [
    (domain.RecipientHistory(False, False, 0), None),
    (domain.RecipientHistory(True, False, 0), domain.Rule.suppressed),
    (domain.RecipientHistory(False, True, 0), domain.Rule.already_received),
    (domain.RecipientHistory(False, False, 3), domain.Rule.over_cap),
    (domain.RecipientHistory(False, False, 2), None),
])
def test_cross_volunteer_rules(history, expected):
    assert domain.skip_reason(history, cap=3) == expected


def test_invitation_says_who_writes_for_whom_where_the_address_came_from_and_how_to_refuse():
    subject, text = domain.invitation_email(volunteer="Alice Martin", campaign="Lyon Demain",
                                            confirm_url="https://x/consent/t", message_title="Écoles",
                                            message_body="Réunion le 12")
    assert "Alice Martin" in subject and "Lyon Demain" in subject
    for needle in ("Alice Martin vous écrit", "bénévole de Lyon Demain", "carnet d'adresses personnel",
                   "https://x/consent/t", "Oui ou non", "Réunion le 12", "personal address book"):
        assert needle in text


def test_a_new_contact_normalizes_phones_and_needs_a_proof_field_only_to_confirm():
    c = ContactIn(name="Ana", emails=["Ana@Exemple.fr"], phones=["06 12 34 56 78"])
    assert c.phones == ["+33612345678"] and c.consent is Consent.unknown


@pytest.mark.parametrize(
    "payload, field",
    [
        ({"name": "A", "emails": ["nope"]}, "emails"),
        ({"name": "", "emails": ["a@b.fr"]}, "name"),
        ({"name": "A", "emails": ["a@b.fr"], "interests": ["Not An Interest"]}, "interests"),
        ({"name": "A", "emails": ["a@b.fr"], "consent": "maybe"}, "consent"),
        ({"name": "A", "phones": ["12"]}, "phones"),
        ({"name": "A", "email": "a@b.fr"}, "email"),
    ],
)
def test_bad_contact_input_names_the_field(payload, field):
    with pytest.raises(ValidationError) as err:
        ContactIn.model_validate(payload)
    assert err.value.errors()[0]["loc"][0] == field
