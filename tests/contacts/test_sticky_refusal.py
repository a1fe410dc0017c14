"""A refusal is sticky (issue 11, finding 7), and a volunteer learns no more
than they need about addresses outside their own actions (the lower
finding). Each test performs the attack on the real contacts app and the
real email dispatcher, on a real nats-server, with the mail read from a
real SMTP server (aiosmtpd), on SQLite and PostgreSQL.

What is proven here:
- refuse -> delete -> re-add -> invite: no second invitation is received;
  re-adding as "confirmed" with a proof, confirming, or giving a confirmed
  contact the address (edit, import merge) is refused with a neutral error
  naming the field; an import's consent column confirms nothing; the next
  relay sends it nothing;
- a second volunteer can neither invite nor confirm an address another
  volunteer invited (one invitation per address, campaign-wide);
- an unsubscribe and a hard bounce hold the same way;
- only the person takes a refusal back: "yes" through their own link, after
  which relays reach them; an unsubscribe stays;
- what volunteers are told is identical for an unsubscribed, a bounced, a
  refusing address and one invited by another volunteer (invitation and
  confirmation refusals), and for those and one in another book that got
  the message or reached the cap (relay skip reasons).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage

import pytest
from fastapi.testclient import TestClient

from services.contacts.app import create_app
from shared.catalogue import FEED, MATCHER, MESSAGE_PUBLISHED, SUGGESTION_MADE
from shared.events import MessagePublished, Suggestion, Variants
from shared.messaging import Bus
from tests.support.apps import BOUNCE_TOKEN, PROVISIONING_TOKEN, build_apps, contacts_settings
from tests.support.servers import SmtpRecorder
from tests.support.volunteer_accounts import NewVolunteer, new_volunteer
from tests.support.waiting import poll
from tests.support.web_client import Browser

PUBLIC_URL = "https://contacts.campagne.example"
PROOF = "trust me"
NEUTRAL = "emails: this address cannot be invited or reached through Maillage"


@dataclass
class Stack:
    contacts: TestClient
    dispatcher: TestClient
    smtp: SmtpRecorder
    nats_url: str


@pytest.fixture
def stack(nats_url: str, db_url: str, smtp_server) -> Iterator[Stack]:
    # the per-person cap is 1, so one test can reach it with two messages
    contacts = create_app(contacts_settings(nats_url, db_url, public_url=PUBLIC_URL, recipient_cap=1))
    dispatcher = build_apps(nats_url, smtp_port=smtp_server.port)["dispatch-email"]
    # https: the web pages' session cookie is Secure
    with TestClient(contacts, base_url="https://testserver") as c, TestClient(dispatcher) as d:
        poll(lambda: d.get("/readyz").status_code, lambda s: s == 200, what="the email dispatcher")
        yield Stack(c, d, smtp_server.recorder, nats_url)


# -- helpers ---------------------------------------------------------------------------------


def volunteer(stack: Stack, name: str) -> NewVolunteer:
    return new_volunteer(stack.contacts, PROVISIONING_TOKEN, name, f"{name.lower()}@benevoles.example")


def add(stack: Stack, vol: NewVolunteer, email: str, confirmed: bool = False, interest: str = "education"):
    body = {"name": email.split("@")[0].title(), "emails": [email], "interests": [interest]}
    if confirmed:
        body |= {"consent": "confirmed", "consent_proof": "said yes at the market, 12/11"}
    return stack.contacts.post("/contacts", headers=vol.auth, json=body)


def added(stack: Stack, vol: NewVolunteer, email: str, **kw) -> str:
    r = add(stack, vol, email, **kw)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def invite(stack: Stack, vol: NewVolunteer, contact_id: str):
    return stack.contacts.post(f"/contacts/{contact_id}/invite", headers=vol.auth, json={})


def mail_to(stack: Stack, address: str) -> list[EmailMessage]:
    return [m for m in stack.smtp.messages if m["To"] and address in m["To"]]


def received(stack: Stack, address: str, count: int) -> EmailMessage:
    """Wait for the ``count``-th email to ``address`` and return it."""
    poll(lambda: len(mail_to(stack, address)), lambda n: n >= count, what=f"{count} email(s) to {address}")
    return mail_to(stack, address)[count - 1]


def text_of(mail: EmailMessage) -> str:
    return mail.get_body(("plain",)).get_content()


def consent_link(mail: EmailMessage) -> str:
    return re.search(rf"{re.escape(PUBLIC_URL)}(/consent/[\w.-]+)", text_of(mail)).group(1)


def unsubscribe_link(mail: EmailMessage) -> str:
    return re.search(rf"<{re.escape(PUBLIC_URL)}(/u/[\w.-]+)>", mail["List-Unsubscribe"]).group(1)


def answer(stack: Stack, link: str, what: str):
    r = stack.contacts.post(link, data={"answer": what})
    assert r.status_code == 200, r.text
    return r


def state_of(stack: Stack, vol: NewVolunteer, contact_id: str) -> str:
    return stack.contacts.get(f"/contacts/{contact_id}", headers=vol.auth).json()["consent"]["email"]["state"]


def confirm(stack: Stack, vol: NewVolunteer, contact_id: str):
    return stack.contacts.put(f"/contacts/{contact_id}/consent/email", headers=vol.auth,
                              json={"state": "confirmed", "proof": PROOF})


def settled(stack: Stack, seconds: float = 1.0) -> None:
    """Give a wrongly queued email the time to arrive, so "nothing more
    came" is a measurement, not a race (the dispatcher sends in ~10 ms)."""
    before = len(stack.smtp.messages)
    try:
        stack.smtp.wait_for(before + 1, timeout=seconds)
    except AssertionError:
        pass


def closed(stack: Stack, vol: NewVolunteer, address: str):
    """``vol`` adds ``address`` as confirmed, until that is refused: a bounce
    reaches contacts through NATS, so the first tries may come before it
    (each such contact is deleted again). The refusal's response."""

    def attempt():
        r = add(stack, vol, address, confirmed=True)
        if r.status_code == 201:
            stack.contacts.delete(f"/contacts/{r.json()['id']}", headers=vol.auth)
        return r

    return poll(attempt, lambda r: r.status_code != 201, what=f"{address} to be closed")


def publish(stack: Stack, service: str, spec, event, *tokens: str) -> None:
    async def go() -> None:
        bus = Bus(service, stack.nats_url)
        await bus.connect()
        await bus.publish(spec, event, *tokens, msg_id=event.event_id)
        await bus.broker.stop()

    asyncio.run(go())


def offer(stack: Stack, interest: str, *volunteers: NewVolunteer) -> dict[str, str]:
    """One campaign message for ``interest``, suggested to each volunteer as
    the matcher would; each one's suggestion id once it is in their inbox."""
    message_id = uuid.uuid4().hex
    publish(stack, FEED, MESSAGE_PUBLISHED, MessagePublished(
        message_id=message_id, title=f"Message {interest}", body="…", interests=(interest,),
        variants=Variants.model_validate({"email": {"subject": f"Sujet {interest}", "body": "Rendez-vous."}})))
    suggestions = {}
    for vol in volunteers:
        suggestion_id = suggestions[vol.volunteer_id] = uuid.uuid4().hex
        publish(stack, MATCHER, SUGGESTION_MADE, Suggestion(
            suggestion_id=suggestion_id, volunteer_id=vol.volunteer_id, message_id=message_id,
            matched_interests=(interest,), audience_size=1), vol.volunteer_id)
        poll(lambda vol=vol: {e["suggestion_id"]: e["title"]
                              for e in stack.contacts.get("/inbox", headers=vol.auth).json()},
             lambda items, suggestion_id=suggestion_id: items.get(suggestion_id), what="the suggestion and its message")
    return suggestions


def relay(stack: Stack, vol: NewVolunteer, suggestions: dict[str, str]) -> dict:
    r = stack.contacts.post(f"/inbox/{suggestions[vol.volunteer_id]}/relay", headers=vol.auth)
    assert r.status_code == 200, r.text
    return r.json()["channels"]["email"]


def bounce(stack: Stack, mail: EmailMessage, address: str) -> None:
    """The receiving MTA's hard bounce (RFC 3464), posted to the dispatcher's
    bounce endpoint as the campaign's mail server does."""
    dsn = (
        "From: MAILER-DAEMON@mx.exemple.fr\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"B0UND\"\r\n\r\n"
        "--B0UND\r\nContent-Type: text/plain\r\n\r\nUndeliverable.\r\n\r\n"
        "--B0UND\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.exemple.fr\r\n\r\n"
        f"Final-Recipient: rfc822; {address}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{address}>: Recipient address rejected\r\n\r\n"
        "--B0UND\r\nContent-Type: message/rfc822\r\n\r\n"
    ).encode() + mail.as_bytes() + b"\r\n--B0UND--\r\n"
    r = stack.dispatcher.post("/bounces", content=dsn, headers={"Authorization": f"Bearer {BOUNCE_TOKEN}"})
    assert r.status_code == 200 and r.json()["hard_bounces"] == 1, r.text


# -- the attack of the finding, step by step ------------------------------------------------------


def test_a_no_holds_after_delete_and_re_add_and_no_volunteer_can_confirm_it(stack: Stack):
    c = stack.contacts
    alice, bob = volunteer(stack, "Alice"), volunteer(stack, "Bob")
    louis = "louis.petit@exemple.fr"
    # Bob had Louis confirmed before any of this; Camille is a confirmed contact of Alice's
    b_louis = added(stack, bob, louis, confirmed=True)
    camille = added(stack, alice, "camille@exemple.fr", confirmed=True)

    # add -> invite -> the person answers "no"
    first = added(stack, alice, louis)
    assert invite(stack, alice, first).status_code == 200
    invitation = received(stack, louis, 1)
    refused = answer(stack, consent_link(invitation), "no")
    assert "receive nothing from this campaign" in refused.text and "same link" in refused.text
    assert state_of(stack, alice, first) == "withdrawn"  # her own invitation's answer: she may see it

    # delete -> re-add -> invite again: refused, nothing sent
    assert c.delete(f"/contacts/{first}", headers=alice.auth).status_code == 204
    again = added(stack, alice, louis)
    r = invite(stack, alice, again)
    assert (r.status_code, r.json()) == (409, {"detail": NEUTRAL})
    assert state_of(stack, alice, again) == "unknown"
    # nor can she mark the re-added contact confirmed, nor re-add it confirmed
    r = confirm(stack, alice, again)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "state"], r.text
    assert NEUTRAL.removeprefix("emails: ") in r.json()["detail"][0]["msg"]
    assert c.delete(f"/contacts/{again}", headers=alice.auth).status_code == 204
    r = c.post("/contacts", headers=alice.auth, json={"name": "Louis", "emails": [louis], "consent": "confirmed",
                                                       "consent_proof": PROOF})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "consent"], r.text
    assert c.get("/contacts", headers=alice.auth, params={"q": "louis"}).json()["total"] == 0  # nothing half-made
    # nor give the address to a confirmed contact: an edit, an import merging a row into it
    r = c.patch(f"/contacts/{camille}", headers=alice.auth, json={"emails": ["camille@exemple.fr", louis]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "emails"], r.text
    csv = ("First Name,E-mail Address,E-mail 2 Address,Email Consent\n"
           f"Camille,camille@exemple.fr,{louis},confirmed\n"
           "Louise,louise@exemple.fr,,confirmed\n").encode()
    job = c.post("/imports", headers=alice.auth, files={"file": ("c.csv", csv, "text/csv")}).json()
    done = poll(lambda: c.get(f"/imports/{job['id']}", headers=alice.auth).json(),
                lambda j: j["status"] != "running", what="the import")
    assert (done["status"], done["rejected"], done["imported"]) == ("done", 1, 1), done
    rejected = c.get(f"/imports/{job['id']}/rows", headers=alice.auth, params={"outcome": "rejected"}).json()
    assert [row["error"] for row in rejected] == [NEUTRAL], rejected
    assert c.get(f"/contacts/{camille}", headers=alice.auth).json()["emails"] == ["camille@exemple.fr"]
    # a consent column confirms nobody: an import's contacts are unknown
    louise = c.get("/contacts", headers=alice.auth, params={"q": "louise"}).json()["items"][0]
    assert louise["consent"]["email"]["state"] == "unknown"

    # the next relay: Bob's earlier confirmation sends Louis nothing either
    suggestions = offer(stack, "education", alice, bob)
    assert relay(stack, bob, suggestions)["skipped"] == {"unreachable": 1}
    assert state_of(stack, bob, b_louis) == "confirmed"  # Bob is not told what Louis did
    assert relay(stack, alice, suggestions)["queued"] == 1  # Camille
    received(stack, "camille@exemple.fr", 1)
    settled(stack)
    assert len(mail_to(stack, louis)) == 1  # the one invitation, ever


def test_a_second_volunteer_can_neither_invite_nor_confirm_an_invited_address(stack: Stack):
    alice, bob = volunteer(stack, "Alice"), volunteer(stack, "Bob")
    paul = "paul.roux@exemple.fr"
    a_paul = added(stack, alice, paul)
    assert invite(stack, alice, a_paul).status_code == 200
    received(stack, paul, 1)

    b_paul = added(stack, bob, paul)
    r = invite(stack, bob, b_paul)
    assert (r.status_code, r.json()) == (409, {"detail": NEUTRAL})
    r = confirm(stack, bob, b_paul)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "state"], r.text
    assert state_of(stack, bob, b_paul) == "unknown"
    r = add(stack, volunteer(stack, "Carol"), paul, confirmed=True)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "consent"], r.text
    # Alice's own contact stays hers: she may confirm the person she invited, with a proof
    assert confirm(stack, alice, a_paul).status_code == 200
    settled(stack)
    assert len(mail_to(stack, paul)) == 1


@pytest.mark.parametrize("how", ["unsubscribe", "bounce"])
def test_an_unsubscribe_or_a_hard_bounce_holds_in_every_book(stack: Stack, how: str):
    c = stack.contacts
    alice, bob, carol = volunteer(stack, "Alice"), volunteer(stack, "Bob"), volunteer(stack, "Carol")
    rose = "rose.blanc@exemple.fr"
    b_rose = added(stack, bob, rose, confirmed=True)
    a_rose = added(stack, alice, rose)
    assert invite(stack, alice, a_rose).status_code == 200
    invitation = received(stack, rose, 1)
    if how == "unsubscribe":
        r = c.post(unsubscribe_link(invitation), data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200, r.text
    else:
        bounce(stack, invitation, rose)
    r = closed(stack, carol, rose)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "consent"], r.text

    assert c.delete(f"/contacts/{a_rose}", headers=alice.auth).status_code == 204
    again = added(stack, alice, rose)
    r = invite(stack, alice, again)
    assert (r.status_code, r.json()) == (409, {"detail": NEUTRAL})
    assert confirm(stack, alice, again).status_code == 422
    suggestions = offer(stack, "education", bob)
    assert relay(stack, bob, suggestions)["skipped"] == {"unreachable": 1}
    assert state_of(stack, bob, b_rose) == "confirmed"
    settled(stack)
    assert len(mail_to(stack, rose)) == 1


def test_only_the_person_takes_a_refusal_back_through_their_own_link(stack: Stack):
    c = stack.contacts
    alice, bob = volunteer(stack, "Alice"), volunteer(stack, "Bob")
    ines, hugo = "ines.moreau@exemple.fr", "hugo.lefevre@exemple.fr"
    b_ines = added(stack, bob, ines)
    a_ines = added(stack, alice, ines)
    assert invite(stack, alice, a_ines).status_code == 200
    link = consent_link(received(stack, ines, 1))
    answer(stack, link, "no")
    assert confirm(stack, bob, b_ines).status_code == 422  # no volunteer can undo it

    # she changes her mind, through the link she received
    assert "Thank you" in answer(stack, link, "yes").text
    assert state_of(stack, alice, a_ines) == "confirmed"
    suggestions = offer(stack, "education", alice)
    assert relay(stack, alice, suggestions)["queued"] == 1
    assert received(stack, ines, 2)["Subject"] == "Sujet education"

    # an unsubscribe stays: a later "yes" through an old link does not reopen the address
    added(stack, bob, hugo, confirmed=True)
    a_hugo = added(stack, alice, hugo)
    assert invite(stack, alice, a_hugo).status_code == 200
    invitation = received(stack, hugo, 1)
    assert c.post(unsubscribe_link(invitation), data={"List-Unsubscribe": "One-Click"}).status_code == 200
    assert "unsubscribed" in answer(stack, consent_link(invitation), "yes").text
    assert state_of(stack, alice, a_hugo) == "withdrawn"
    assert confirm(stack, alice, a_hugo).status_code == 422
    assert relay(stack, bob, offer(stack, "education", bob))["skipped"] == {"unreachable": 1}
    settled(stack)
    assert len(mail_to(stack, hugo)) == 1


# -- the lower finding: one neutral answer ------------------------------------------------------------


def test_what_a_volunteer_is_told_is_the_same_whatever_the_person_or_another_volunteer_did(stack: Stack):
    alice, bob, carol, dan = (volunteer(stack, n) for n in ("Alice", "Bob", "Carol", "Dan"))
    # one address per cause; Bob had each a relay may skip confirmed, each with its own interest (an
    # invitation nobody answered is no refusal: his earlier confirmation of that person still holds)
    causes = {"unsubscribed": ("u@exemple.fr", "education"), "bounced": ("b@exemple.fr", "transport"),
              "refused": ("r@exemple.fr", "seniors"), "invited_elsewhere": ("i@exemple.fr", "logement"),
              "already_received": ("o@exemple.fr", "culture"), "over_cap": ("k@exemple.fr", "sante")}
    skipped = {cause: interest for cause, (_, interest) in causes.items() if cause != "invited_elsewhere"}
    for cause in skipped:
        added(stack, bob, causes[cause][0], confirmed=True, interest=causes[cause][1])

    invitations = {}
    for cause in ("unsubscribed", "bounced", "refused", "invited_elsewhere"):
        address = causes[cause][0]
        assert invite(stack, alice, added(stack, alice, address)).status_code == 200
        invitations[cause] = received(stack, address, 1)
    r = stack.contacts.post(unsubscribe_link(invitations["unsubscribed"]), data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200
    bounce(stack, invitations["bounced"], causes["bounced"][0])
    answer(stack, consent_link(invitations["refused"]), "no")
    # Alice relays to "o" the message Bob will relay; Carol sends "k" another message (the cap is 1)
    added(stack, alice, causes["already_received"][0], confirmed=True, interest="culture")
    added(stack, carol, causes["over_cap"][0], confirmed=True, interest="sante")
    culture = offer(stack, "culture", alice, bob)
    assert relay(stack, alice, culture)["queued"] == 1
    assert relay(stack, carol, offer(stack, "sante", carol))["queued"] == 1

    # Dan asks to add each of the first four as confirmed, then to invite them
    invited, confirmed = {}, {}
    for cause in ("unsubscribed", "bounced", "refused", "invited_elsewhere"):
        r = closed(stack, dan, causes[cause][0])
        confirmed[cause] = (r.status_code, r.json())
        contact = added(stack, dan, causes[cause][0])
        r = invite(stack, dan, contact)
        invited[cause] = (r.status_code, r.json())
        r = confirm(stack, dan, contact)
        confirmed[f"{cause}, later"] = (r.status_code, r.json())
    assert invited["refused"] == (409, {"detail": NEUTRAL})
    assert len({repr(v) for v in invited.values()}) == 1, invited
    assert len({repr(v) for k, v in confirmed.items() if "later" not in k}) == 1, confirmed
    assert len({repr(v) for k, v in confirmed.items() if "later" in k}) == 1, confirmed

    # Bob relays one message per cause: every outcome reads the same
    outcomes = {cause: relay(stack, bob, culture if cause == "already_received" else offer(stack, interest, bob))
                for cause, interest in skipped.items()}
    assert outcomes["refused"] == {"status": "done", "queued": 0, "delivered": 0, "failed": 0,
                                   "skipped": {"unreachable": 1}}
    assert len({repr(v) for v in outcomes.values()}) == 1, outcomes
    # and the relay's page says no more than its API
    page = stack.contacts.get(f"/relays/{relay_id_of(stack, bob, culture)}", headers=bob.auth).json()
    assert page["channels"]["email"] == outcomes["already_received"]


def relay_id_of(stack: Stack, vol: NewVolunteer, suggestions: dict[str, str]) -> str:
    inbox = stack.contacts.get("/inbox", headers=vol.auth).json()
    return next(e["relay_id"] for e in inbox if e["suggestion_id"] == suggestions[vol.volunteer_id])


def test_the_web_forms_refuse_the_same_way(stack: Stack):
    """A volunteer on the contact page: confirming or inviting a refusing
    address shows the neutral refusal and changes nothing."""
    alice = volunteer(stack, "Alice")
    louis = "louis.petit@exemple.fr"
    first = added(stack, alice, louis)
    assert invite(stack, alice, first).status_code == 200
    answer(stack, consent_link(received(stack, louis, 1)), "no")

    bob = Browser(stack.contacts)
    code = stack.contacts.post("/admin/invites", json={"display_name": "Bob", "email": "bob@benevoles.example"},
                               headers={"Authorization": f"Bearer {PROVISIONING_TOKEN}"}).json()["code"]
    assert bob.post_form("/app/sign-in/invite", {"code": code}, from_page="/join").status_code == 303
    imported = bob.post_form("/app/import", from_page="/app/import", files={"file": (
        "c.csv", f"First Name,E-mail Address,Email Consent\nLouis,{louis},confirmed\n".encode(), "text/csv")})
    assert imported.status_code == 303, imported.text
    page = poll(lambda: bob.get("/app/contacts").text, lambda text: "/app/contacts/" in text and "Louis" in text,
                what="the import")
    contact = "/app/contacts/" + re.search(r'href="/app/contacts/([0-9a-f]{32})">Louis<', page).group(1)
    assert "badge unknown" in bob.get(contact).text  # the file's consent column confirmed nothing

    confirmed = bob.post_form(f"{contact}/consent", {"state": "confirmed", "proof": PROOF}, from_page=contact)
    assert confirmed.status_code == 422 and NEUTRAL.removeprefix("emails: ") in confirmed.text, confirmed.text
    invited = bob.post_form(f"{contact}/invite", from_page=contact)
    assert invited.status_code == 409 and NEUTRAL in invited.text, invited.text
    assert "badge unknown" in bob.get(contact).text
    settled(stack)
    assert len(mail_to(stack, louis)) == 1
