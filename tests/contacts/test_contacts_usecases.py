"""Contacts' use cases on a FakeBus and SQLite, without nats-server or
HTTP: each commits its own work, refuses with the service's errors, and
publishes only through the outbound module (what the bus records)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session

from services.contacts import store
from services.contacts.domain import Consent, ContactIn
from services.contacts.errors import BookGone, Conflict, Invalid, NotFound
from services.contacts.store import CampaignMessage, ConsentRecord, InboxItem, SentItem, Suppression, Volunteer
from services.contacts.usecases import answer_link, edit_book, erase_me, invite_contact, read_book, receive_outcome
from services.contacts.usecases._unit import Contacts
from services.contacts.usecases.relay import Refusal, RelayRefused, relay_suggestion
from shared.catalogue import CONTACTS, EMAIL_JOB, OUTCOME_REVISED, PROFILE_UPDATED, RELAY_REQUESTED, SUPPRESSION_ADDED
from shared.db import make_engine
from shared.events import BounceReported, utcnow
from shared.messaging import FakeBus
from shared.outcomes import OutcomeKind
from tests.support.apps import contacts_settings


@pytest.fixture
def ctx(tmp_path):
    db_url = f"sqlite:///{tmp_path / 'contacts.db'}"
    engine = make_engine(db_url)
    store.create_schema(engine)
    yield Contacts.from_settings(contacts_settings("nats://127.0.0.1:1", db_url), engine, FakeBus(CONTACTS))
    engine.dispose()


def volunteer(ctx: Contacts, name: str = "Alice") -> Volunteer:
    with Session(ctx.engine, expire_on_commit=False) as s:
        vol = Volunteer(display_name=name, email=f"{name.lower()}@benevoles.example", token_hash=name * 8)
        s.add(vol)
        s.commit()
        return vol


def confirmed(email: str) -> ContactIn:
    return ContactIn(name=email.split("@")[0], emails=[email], interests=["education"],
                     consent="confirmed", consent_proof="oui, au marché")


async def test_adding_contacts_commits_them_and_republishes_the_profile(ctx):
    vol = volunteer(ctx)
    added = await edit_book.add_contact(ctx, vol, confirmed("helene@exemple.fr"))
    assert (await read_book.contact(ctx, vol, added["id"]))["emails"] == ["helene@exemple.fr"]
    [profile] = ctx.bus.events(PROFILE_UPDATED)
    assert profile.volunteer_id == vol.id and profile.audience == {"education": {"email": 1}}
    with pytest.raises(Conflict):
        await edit_book.add_contact(ctx, vol, ContactIn(name="Other", emails=["HELENE@exemple.fr"]))
    with pytest.raises(Invalid):
        await edit_book.add_contact(ctx, vol, ContactIn(name="Nobody"))
    assert len(ctx.bus.events(PROFILE_UPDATED)) == 1  # a refusal publishes nothing
    other = volunteer(ctx, "Bob")
    with pytest.raises(NotFound):  # another book's contact is not there at all
        await read_book.contact(ctx, other, added["id"])


async def test_an_invitation_is_sent_once_sealed_and_marks_the_contact_invited(ctx):
    vol = volunteer(ctx)
    added = await edit_book.add_contact(ctx, vol, ContactIn(name="Marc", emails=["marc@exemple.fr"]))
    invited = await invite_contact.invite_contact(ctx, vol, added["id"], None)
    assert invited["consent"]["email"]["state"] == Consent.invited.value
    [job] = ctx.bus.events(EMAIL_JOB)
    assert job.kind == "invitation" and "marc@exemple.fr" not in job.model_dump_json()  # sealed
    with pytest.raises(Conflict):
        await invite_contact.invite_contact(ctx, vol, added["id"], None)
    assert len(ctx.bus.events(EMAIL_JOB)) == 1


async def test_a_relay_publishes_its_jobs_once_and_refuses_a_withdrawn_message(ctx):
    vol = volunteer(ctx)
    await edit_book.add_contact(ctx, vol, confirmed("helene@exemple.fr"))
    with Session(ctx.engine) as s:
        for mid, withdrawn in (("m-1", None), ("m-2", utcnow())):
            s.add(CampaignMessage(message_id=mid, title="T", body="B", interests=["education"], email_subject="S",
                                  email_body="Corps", withdrawn_at=withdrawn))
            s.add(InboxItem(suggestion_id=f"s-{mid}", volunteer_id=vol.id, message_id=mid,
                            matched_interests=["education"], audience_size=1, score=1.0))
        s.commit()
    rid, done = await relay_suggestion(ctx, vol, "s-m-1")
    assert done and len(ctx.bus.events(EMAIL_JOB)) == 1
    [relayed] = ctx.bus.events(RELAY_REQUESTED)
    assert relayed.relay_id == rid and relayed.jobs_queued == {"email": 1}
    assert await relay_suggestion(ctx, vol, "s-m-1") == (rid, False)  # the same click again: nothing new
    assert len(ctx.bus.events(EMAIL_JOB)) == 1
    with pytest.raises(RelayRefused) as refused:
        await relay_suggestion(ctx, vol, "s-m-2")
    assert refused.value.reason is Refusal.not_live


async def test_an_unsubscribe_closes_the_address_and_tells_the_dispatchers(ctx):
    vol = volunteer(ctx)
    added = await edit_book.add_contact(ctx, vol, confirmed("helene@exemple.fr"))
    blind = ctx.keys.index.email("helene@exemple.fr")
    await answer_link.unsubscribe(ctx, {"v": vol.id, "c": added["id"], "b": blind})
    assert [(e.address_hash, e.reason) for e in ctx.bus.events(SUPPRESSION_ADDED)] == [(blind, "unsubscribe")]
    with Session(ctx.engine) as s:
        assert s.get(Suppression, blind).reason == "unsubscribe"
        assert s.get(ConsentRecord, (added["id"], "email")).state == Consent.withdrawn.value
    assert ctx.bus.events(PROFILE_UPDATED)[-1].audience == {}
    # a "yes" through an invitation's link cannot reopen it
    answer = await answer_link.answer_invitation(ctx, {"v": vol.id, "c": added["id"], "ch": "email", "b": blind},
                                                 yes=True)
    assert answer is answer_link.Answer.closed


async def test_a_bounce_after_delivery_is_revised_for_staff(ctx):
    vol = volunteer(ctx)
    with Session(ctx.engine) as s:
        s.add(store.Relay(id="r-1", suggestion_id="s-1", volunteer_id=vol.id, message_id="m-1", emails_queued=1))
        s.add(SentItem(job_id="j-1", relay_id="r-1", contact_id=None, message_id="m-1", channel="email",
                       status="delivered", outcome=OutcomeKind.delivered.value))
        s.commit()
    await receive_outcome.record_bounce(ctx.engine, ctx.bus, BounceReported(
        job_id="j-1", address_hash="ab" * 32, status="5.1.1", occurred_at=utcnow() + timedelta(seconds=1)))
    [revised] = ctx.bus.events(OUTCOME_REVISED)
    assert revised.job_id == "j-1" and revised.outcome is OutcomeKind.bounced
    with Session(ctx.engine) as s:
        assert s.get(SentItem, "j-1").outcome == OutcomeKind.bounced.value


async def test_erasing_a_book_publishes_an_empty_profile_and_closes_the_book(ctx):
    vol = volunteer(ctx)
    await edit_book.add_contact(ctx, vol, confirmed("helene@exemple.fr"))
    await erase_me.erase_me(ctx, vol.id)
    assert ctx.bus.events(PROFILE_UPDATED)[-1].audience == {}
    with pytest.raises(BookGone):
        await read_book.page(ctx, vol, read_book.PageQuery())
