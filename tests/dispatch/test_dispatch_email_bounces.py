"""Bounces: delivery status notifications (RFC 3464) read by the email
dispatcher's authenticated endpoint; hard bounces become
``dispatch.email.bounces`` events (job id, address hash: no address);
contacts marks the job bounced in the volunteer's history and tells feed,
whose staff figures move the email from reached to bounced."""

from __future__ import annotations

import asyncio
import time
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart

import nats
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from services.contacts.app import create_app as contacts_app
from services.contacts.store import Relay, SentItem, Volunteer
from services.contacts.web.history import load as history
from services.dispatch.email.app import create_email_app
from services.dispatch.email.domain.dsn import NotADsn, read_dsn
from services.dispatch.email.domain.message import compose
from services.dispatch.email.ledger import open_ledger
from services.feed.store import message_facts
from shared.catalogue import DISPATCH_BOUNCES_STREAM, EMAIL_BOUNCE, EMAIL_RESULT, RELAY_REQUESTED, SUGGESTION_MADE
from shared.db import make_engine
from shared.events import BounceReported, Channel, DeliveryStatus, DispatchResult, RelayRequested, Suggestion, utcnow
from shared.outcomes import OutcomeKind
from tests.support.apps import contacts_settings
from tests.support.dispatch_email import FROM, LIST_ID, job, settings
from tests.support.dsn import dsn
from tests.support.feed import ADMIN, message, publish_raw, running_feed
from tests.support.waiting import poll

TOKEN = "bounce-token-0123456789abcdef"


def sent(n: int) -> EmailMessage:
    return compose(job(n), FROM, LIST_ID)


# -- reading DSNs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("headers_only", [False, True], ids=["message/rfc822", "text/rfc822-headers"])
def test_a_hard_bounce_names_its_job(headers_only):
    reading = read_dsn(dsn(sent(7), ("camille7@exemple.fr", "failed", "5.1.1"), headers_only=headers_only))
    assert [(b.job_id, b.status) for b in reading.hard] == [("job-7", "5.1.1")]
    assert reading.soft == 0


def test_delays_and_4xx_failures_are_not_hard_bounces():
    reading = read_dsn(dsn(sent(1), ("camille1@exemple.fr", "delayed", "4.4.7"),
                           ("camille1@exemple.fr", "failed", "4.2.2")))
    assert reading.hard == () and reading.soft == 2
    delivered = read_dsn(dsn(sent(1), ("camille1@exemple.fr", "delivered", "2.0.0")))
    assert delivered.hard == () and delivered.soft == 0


@pytest.mark.parametrize("raw, why", [
    (b"Subject: hello\n\nnot a report", "multipart/report"),
    (b"", "multipart/report"),
    (MIMEMultipart("report", report_type="disposition-notification").as_bytes(), "report-type"),
    (MIMEMultipart("report", report_type="delivery-status").as_bytes(), "message/delivery-status"),
])
def test_what_is_not_a_dsn_is_refused_with_the_reason(raw, why):
    with pytest.raises(NotADsn, match=why):
        read_dsn(raw)


def test_a_hard_bounce_without_the_returned_message_cannot_be_attributed():
    with pytest.raises(NotADsn, match="Message-ID"):
        read_dsn(dsn(None, ("camille1@exemple.fr", "failed", "5.1.1")))


# -- the endpoint ------------------------------------------------------------------------------------------


async def bounces_on_stream(nats_url: str, count: int) -> list[bytes]:
    nc = await nats.connect(nats_url)
    try:
        sub = await nc.jetstream().subscribe(EMAIL_BOUNCE.pattern, stream=DISPATCH_BOUNCES_STREAM.name,
                                             ordered_consumer=True)
        return [(await sub.next_msg(timeout=5)).data for _ in range(count)]
    finally:
        await nc.close()


def test_the_bounce_endpoint_turns_hard_bounces_into_events(nats_url, tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"

    async def seed() -> None:
        ledger = open_ledger(url)
        await ledger.open()
        await ledger.record_sent("job-1", "vol-alice", job(1).recipient_hash)
        await ledger.close()

    asyncio.run(seed())
    app = create_email_app(settings("127.0.0.1", 1, nats_url, ledger_url=url, bounce_token=TOKEN))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(app) as client:
        hard = dsn(sent(1), ("camille1@exemple.fr", "failed", "5.1.1"))
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            r = client.post("/bounces", content=hard, headers=headers)
            assert r.status_code == 401, r.text

        r = client.post("/bounces", content=hard, headers={**auth, "Content-Type": "message/rfc822"})
        assert r.status_code == 200, r.text
        assert r.json() == {"hard_bounces": 1, "soft_bounces": 0, "unknown_jobs": 0}

        # a job this dispatcher never sent (or forgot): counted, nothing published
        r = client.post("/bounces", content=dsn(sent(2), ("camille2@exemple.fr", "failed", "5.1.1")), headers=auth)
        assert r.json() == {"hard_bounces": 0, "soft_bounces": 0, "unknown_jobs": 1}

        r = client.post("/bounces", content=b"\x00\xffnot mail at all", headers=auth)
        assert r.status_code == 422 and "not a delivery status notification" in r.json()["detail"]
        r = client.post("/bounces", content=b"x" * (1024 * 1024 + 1), headers=auth)
        assert r.status_code == 413

    [raw] = asyncio.run(bounces_on_stream(nats_url, 1))
    event = BounceReported.model_validate_json(raw)
    assert (event.job_id, event.address_hash, event.status) == ("job-1", job(1).recipient_hash, "5.1.1")
    assert b"camille" not in raw  # the hash, never the address


def test_without_a_configured_token_nobody_may_post_bounces(nats_url, tmp_path):
    app = create_email_app(settings("127.0.0.1", 1, nats_url, ledger_url=f"sqlite:///{tmp_path / 'l.db'}"))
    with TestClient(app) as client:
        for token in ("", "None", "null"):
            r = client.post("/bounces", content=b"x", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401


# -- a bounce after delivery, to staff and to the volunteer ---------------------------------------------------

K = 5  # feed's default k
SETTLE = 0.3


def test_an_email_delivered_then_bounced_reads_bounced_to_staff_and_in_the_volunteers_history(nats_url, tmp_path):
    """Ten volunteers' emails delivered; then five of them bounce (as the
    bounce endpoint publishes them). Staff's figures move the five from
    reached to bounced, as each volunteer's history shows them."""
    volunteers = [f"vol{n}" for n in range(2 * K)]
    contacts_db, feed_db = f"sqlite:///{tmp_path / 'contacts.db'}", f"sqlite:///{tmp_path / 'feed.db'}"
    with running_feed(nats_url, feed_db, reach_settle_seconds=SETTLE) as feed, \
            TestClient(contacts_app(contacts_settings(nats_url, contacts_db))):
        made = feed.post("/messages", headers=ADMIN, json=message())
        assert made.status_code == 201, made.text
        mid = made.json()["id"]
        engine = make_engine(contacts_db)
        with Session(engine) as s:  # what the volunteers' relays left in contacts
            s.add_all(Volunteer(id=v, display_name=v, email=f"{v}@benevoles.example") for v in volunteers)
            s.commit()
            for v in volunteers:
                s.add(Relay(id=f"r-{v}", suggestion_id=f"s-{v}", volunteer_id=v, message_id=mid, emails_queued=1))
                s.add(SentItem(job_id=f"j-{v}", relay_id=f"r-{v}", message_id=mid, channel="email", status="queued"))
            s.commit()

        feed_engine = make_engine(feed_db)

        def counted() -> list[OutcomeKind]:
            """The test's own look at feed's facts: staff read only once all
            are in, or a figure shown midway waits for k more changes."""
            with Session(feed_engine) as s:
                return sorted(kind for _, _, kind, _, n, _ in message_facts(s, mid, utcnow()).deliveries
                              for _ in range(n))

        def reach() -> tuple:
            email = feed.get(f"/messages/{mid}/reach", headers=ADMIN).json()["channels"]["email"]
            return email["reached"]["value"], email["bounced"]["value"]

        def lines() -> dict[str, dict]:
            with Session(engine) as s:
                return {v: {line: n for line, n in history(s, v)[0].counts.items() if n} for v in volunteers}

        publish_raw(nats_url, [item for v in volunteers for item in (
            (SUGGESTION_MADE.subject(v), f"s-{v}", Suggestion(
                suggestion_id=f"s-{v}", volunteer_id=v, message_id=mid, audience_size=1,
                matched_interests=("education",))),
            (RELAY_REQUESTED.subject(), f"r-{v}", RelayRequested(
                relay_id=f"r-{v}", volunteer_id=v, message_id=mid, jobs_queued={Channel.email: 1})),
            (EMAIL_RESULT.subject(), f"j-{v}:result", DispatchResult(
                job_id=f"j-{v}", relay_id=f"r-{v}", message_id=mid, volunteer_id=v, channel=Channel.email,
                status=DeliveryStatus.delivered)),
        )])
        poll(counted, lambda c: c == [OutcomeKind.delivered] * 2 * K, timeout=30, what="ten results counted")
        time.sleep(SETTLE + 0.2)
        assert reach() == (2 * K, None)
        poll(lines, lambda h: all(c == {"delivered": 1} for c in h.values()), what="histories delivered")

        bounced = volunteers[:K]
        publish_raw(nats_url, [(EMAIL_BOUNCE.subject(), f"j-{v}:bounce", BounceReported(
            job_id=f"j-{v}", address_hash="ab" * 32, status="5.1.1")) for v in bounced])
        poll(counted, lambda c: c.count(OutcomeKind.bounced) == K, timeout=30, what="five bounces counted")
        time.sleep(SETTLE + 0.2)
        assert reach() == (K, K)
        history_now = poll(lines, lambda h: all(h[v] == {"bounced": 1} for v in bounced), what="histories bounced")
        assert all(history_now[v] == {"delivered": 1} for v in volunteers[K:])
        engine.dispose()
        feed_engine.dispose()
