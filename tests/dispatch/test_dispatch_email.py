"""The email dispatcher: how a job becomes an email, the persistent SMTP
connection, and the worker end to end over a real nats-server and a real
aiosmtpd server."""

from __future__ import annotations

import asyncio
import json
from email import message_from_bytes, policy
from email.utils import parseaddr

import nats
from aiosmtpd.controller import Controller

from services.dispatch.email.domain.message import Outcome, classify_smtp_code, compose, first_name, wire
from services.dispatch.email.smtp import SmtpPool
from shared.catalogue import (
    CONTACTS,
    DISPATCH_EMAIL,
    DISPATCH_JOBS_STREAM,
    EMAIL_JOB,
    FEED,
    MESSAGE_WITHDRAWN,
    SUPPRESSION_ADDED,
)
from shared.events import (
    Channel,
    DeliveryStatus,
    MessageWithdrawn,
    Suppressed,
)
from shared.messaging import Bus
from tests.support.dispatch_email import (
    FROM,
    LIST_ID,
    address_hash,
    consumer_settled,
    counter,
    dispatcher,
    html_of,
    job,
    plain,
    results,
    settings,
    text_of,
)
from tests.support.servers import SmtpRecorder
from tools.stack import free_port

# -- composing ------------------------------------------------------------------------------


def test_compose_sends_as_the_volunteer_through_the_campaign_address():
    msg = compose(job(), FROM, LIST_ID)
    assert parseaddr(msg["From"]) == ("Alice Martin", FROM)
    assert parseaddr(msg["Reply-To"]) == ("Alice Martin", "alice.martin@perso.example")
    assert parseaddr(msg["To"]) == ("Camille Dupont1", "camille1@exemple.fr")
    assert msg["Subject"] == "Les écoles ont besoin de vous"
    assert msg["Message-ID"].startswith("<") and "job-1" in msg["Message-ID"]
    assert msg["Message-ID"].endswith("@campagne.example>")
    body = text_of(msg)
    assert body.startswith("Bonjour Camille,\n\nLe texte du message 1.\n\n— Alice Martin\n")
    assert msg.get_content_type() == "multipart/alternative"
    assert "<p>Le texte du message 1.</p>" in html_of(msg) and "Bonjour Camille," in html_of(msg)
    # RFC 2369 / RFC 8058 one-click unsubscribe, and the link in the text too
    assert msg["List-Id"] == f"<{LIST_ID}>"
    assert msg["List-Unsubscribe"] == "<https://campagne.example/desabonnement/job-1>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "https://campagne.example/desabonnement/job-1" in body

    # It survives the wire: non-ASCII subject and body are encoded, then read back.
    wire = message_from_bytes(msg.as_bytes(), policy=policy.default)
    assert wire["Subject"] == "Les écoles ont besoin de vous"
    assert text_of(wire) == body


def test_compose_greets_without_a_name():
    assert text_of(compose(job(recipient_name=""), FROM, LIST_ID)).startswith("Bonjour,\n\n")
    assert text_of(compose(job(recipient_name="  Élise   Roy "), FROM, LIST_ID)).startswith("Bonjour Élise,")
    assert first_name("   ") == ""


def test_smtp_codes():
    assert classify_smtp_code(250) is Outcome.delivered
    assert classify_smtp_code(421) is Outcome.retry
    assert classify_smtp_code(451) is Outcome.retry
    assert classify_smtp_code(550) is Outcome.failed
    assert classify_smtp_code(554) is Outcome.failed


# -- the SMTP connection ----------------------------------------------------------------------


async def send_plain(sender: SmtpPool, n: int) -> None:
    await sender.send(FROM, f"camille{n}@exemple.fr", wire(plain(n)))


async def test_one_persistent_connection_for_many_messages(smtp_server):
    sender = SmtpPool(settings(smtp_server.host, smtp_server.port, smtp_pool_size=1))
    try:
        for n in range(5):
            await send_plain(sender, n)
        received = await smtp_server.recorder.await_count(5)
        assert [m["Subject"] for m in received] == [f"n°{n}" for n in range(5)]
        assert len(smtp_server.recorder.sessions) == 1
        assert await sender.ready() == (True, "1/1 connected")
    finally:
        await sender.close()
    assert await sender.ready() == (True, "idle")


async def test_the_pool_sends_on_as_many_connections_as_its_size(smtp_server):
    sender = SmtpPool(settings(smtp_server.host, smtp_server.port, smtp_pool_size=3))
    try:
        await asyncio.gather(*(send_plain(sender, n) for n in range(30)))
        received = await smtp_server.recorder.await_count(30)
        assert sorted(m["Subject"] for m in received) == sorted(f"n°{n}" for n in range(30))
        assert len(smtp_server.recorder.sessions) == 3  # persistent: 3 connections for 30 messages
        assert await sender.ready() == (True, "3/3 connected")
    finally:
        await sender.close()


class GreetingCounter(SmtpRecorder):
    """Counts EHLOs: one per connection (``sessions`` holds ids, which a
    new session may reuse once the old one is gone)."""

    greetings: int = 0

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.greetings += 1
        session.host_name = hostname
        return responses


async def test_reconnects_after_the_server_drops():
    recorder, port = GreetingCounter(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    sender = SmtpPool(settings("127.0.0.1", port, smtp_pool_size=1))
    try:
        await send_plain(sender, 1)
        await asyncio.to_thread(controller.stop)  # the server goes away, and comes back
        controller = Controller(recorder, hostname="127.0.0.1", port=port)
        controller.start()
        await send_plain(sender, 2)  # the pool noticed the drop and connects again
        await send_plain(sender, 3)
        received = await recorder.await_count(3)
        assert [m["Subject"] for m in received] == ["n°1", "n°2", "n°3"]
        assert recorder.greetings == 2  # one connection before the drop, one after
    finally:
        await sender.close()
        controller.stop()


# -- the worker over NATS -----------------------------------------------------------------------


async def test_worker_sends_each_job_and_reports_delivered(nats_url, smtp_server):
    jobs = [job(n) for n in range(1, 4)]
    async with dispatcher(nats_url, smtp_server) as (contacts, _):
        for j in jobs:
            await contacts.publish(EMAIL_JOB, j, msg_id=j.job_id)
        received = await smtp_server.recorder.await_count(3)
        reported = await results(nats_url, 3)
        await consumer_settled(nats_url)

    by_to = {parseaddr(m["To"])[1]: m for m in received}
    assert set(by_to) == {f"camille{n}@exemple.fr" for n in range(1, 4)}
    for n in range(1, 4):
        m = by_to[f"camille{n}@exemple.fr"]
        assert parseaddr(m["From"]) == ("Alice Martin", FROM)
        assert parseaddr(m["Reply-To"]) == ("Alice Martin", "alice.martin@perso.example")
        assert m["Subject"] == "Les écoles ont besoin de vous"
        assert f"job-{n}" in m["Message-ID"]
        body = text_of(m)  # as received from the SMTP wire
        assert body.startswith(f"Bonjour Camille,\n\nLe texte du message {n}.\n\n— Alice Martin\n")
        assert m["List-Unsubscribe"] == f"<https://campagne.example/desabonnement/job-{n}>"
    for (mail_from, rcpt_tos), m in zip(smtp_server.recorder.envelopes, received, strict=True):
        assert mail_from == FROM and rcpt_tos == [parseaddr(m["To"])[1]]
    assert len(smtp_server.recorder.sessions) <= 4  # the pool's connections, not one per email

    assert sorted(r.job_id for r, _ in reported) == ["job-1", "job-2", "job-3"]
    for result, raw in reported:
        assert result.status is DeliveryStatus.delivered and result.reason is None
        assert result.channel is Channel.email
        assert (result.relay_id, result.message_id, result.volunteer_id) == ("relay-1", "m-ecoles", "vol-alice")
        assert b"camille" not in raw.lower() and b"alice.martin" not in raw  # no identities in results


async def test_an_invalid_job_is_terminated_and_counted_and_the_next_one_goes(nats_url, smtp_server):
    """The lean consumer keeps the bus's boundary: a payload that is not an
    EmailJob (here, no valid address) is never retried nor sent."""
    labels = {"service": DISPATCH_EMAIL, "subject": EMAIL_JOB.pattern, "reason": "invalid_payload"}
    before = counter("maillage_messages_failed_total", labels)
    bad = job(1).model_dump(mode="json") | {"recipient_email": "not an address"}
    async with dispatcher(nats_url, smtp_server) as (contacts, _):
        nc = await nats.connect(nats_url)
        try:
            await nc.jetstream().publish(EMAIL_JOB.pattern, json.dumps(bad).encode(), headers={"Nats-Msg-Id": "bad"})
        finally:
            await nc.close()
        await contacts.publish(EMAIL_JOB, job(2), msg_id="job-2")
        await smtp_server.recorder.await_count(1)
        await consumer_settled(nats_url)  # terminated: neither pending nor waiting for an ack
    assert [rcpts for _, rcpts in smtp_server.recorder.envelopes] == [["camille2@exemple.fr"]]
    assert counter("maillage_messages_failed_total", labels) == before + 1


async def test_refused_recipient_fails_at_once_with_the_smtp_code(nats_url, smtp_server):
    smtp_server.recorder.refuse["nobody@exemple.fr"] = "550 no such user"
    refused = job(1, recipient_email="nobody@exemple.fr")
    retries_before = counter("maillage_dispatch_emails_total", {"outcome": "retry"})
    async with dispatcher(nats_url, smtp_server, max_deliver=2) as (contacts, _):
        await contacts.publish(EMAIL_JOB, refused, msg_id=refused.job_id)
        await contacts.publish(EMAIL_JOB, job(2), msg_id="job-2")  # the next one still goes
        await smtp_server.recorder.await_count(1)
        reported = {r.job_id: r for r, _ in await results(nats_url, 2)}
        nc = await nats.connect(nats_url)
        info = await nc.jetstream().consumer_info(DISPATCH_JOBS_STREAM.name, DISPATCH_EMAIL)
        await nc.close()

    assert [parseaddr(m["To"])[1] for m in smtp_server.recorder.messages] == ["camille2@exemple.fr"]
    assert reported["job-2"].status is DeliveryStatus.delivered
    assert reported["job-1"].status is DeliveryStatus.failed
    assert reported["job-1"].reason == "smtp 550"
    # no retry: delivered once, no redelivery, no retry counted
    assert counter("maillage_dispatch_emails_total", {"outcome": "retry"}) == retries_before
    assert info.num_redelivered == 0


async def test_refused_recipient_is_reported_failed_without_an_email(nats_url, smtp_server):
    """What holds today even with the bug above: the job ends failed, the
    recipient gets nothing, and the other jobs are not held up."""
    smtp_server.recorder.refuse["nobody@exemple.fr"] = "550 no such user"
    refused = job(1, recipient_email="nobody@exemple.fr")
    async with dispatcher(nats_url, smtp_server, max_deliver=1) as (contacts, _):
        await contacts.publish(EMAIL_JOB, refused, msg_id=refused.job_id)
        await contacts.publish(EMAIL_JOB, job(2), msg_id="job-2")
        await smtp_server.recorder.await_count(1)
        reported = {r.job_id: r for r, _ in await results(nats_url, 2)}
        await consumer_settled(nats_url)
    assert [parseaddr(m["To"])[1] for m in smtp_server.recorder.messages] == ["camille2@exemple.fr"]
    assert reported["job-1"].status is DeliveryStatus.failed and reported["job-1"].reason
    assert reported["job-2"].status is DeliveryStatus.delivered


async def test_the_same_job_published_twice_sends_one_email(nats_url, smtp_server):
    twice = job(1)
    async with dispatcher(nats_url, smtp_server) as (contacts, _):
        await contacts.publish(EMAIL_JOB, twice, msg_id=twice.job_id)
        await contacts.publish(EMAIL_JOB, twice, msg_id=twice.job_id)  # a retried publish
        await contacts.publish(EMAIL_JOB, job(2), msg_id="job-2")  # a sentinel after it
        await smtp_server.recorder.await_count(2)
        await results(nats_url, 2)
        await consumer_settled(nats_url)  # everything stored has been handled
        await asyncio.sleep(0.3)
    recipients = sorted(parseaddr(m["To"])[1] for m in smtp_server.recorder.messages)
    assert recipients == ["camille1@exemple.fr", "camille2@exemple.fr"]


async def test_a_suppressed_address_gets_no_email(nats_url, smtp_server):
    """An opt-out stored before the dispatcher starts is replayed, one that
    arrives while it runs is applied: neither address is written to."""
    contacts = Bus(CONTACTS, nats_url)
    await contacts.connect()
    before = Suppressed(address_hash=address_hash("camille1@exemple.fr"), reason="unsubscribe")
    await contacts.publish(SUPPRESSION_ADDED, before, msg_id=before.event_id)
    await contacts.stop()

    async with dispatcher(nats_url, smtp_server) as (contacts, suppressed):
        await contacts.publish(EMAIL_JOB, job(1), msg_id="job-1")
        await contacts.publish(EMAIL_JOB, job(2), msg_id="job-2")
        await smtp_server.recorder.await_count(1)
        reported = {r.job_id: r for r, _ in await results(nats_url, 2)}

        during = Suppressed(address_hash=address_hash("camille3@exemple.fr"), reason="bounce")
        await contacts.publish(SUPPRESSION_ADDED, during, msg_id=during.event_id)
        for _ in range(100):  # the live subscription applies it
            if during.address_hash in suppressed:
                break
            await asyncio.sleep(0.02)
        assert during.address_hash in suppressed and before.address_hash in suppressed
        await contacts.publish(EMAIL_JOB, job(3), msg_id="job-3")
        reported.update({r.job_id: r for r, _ in await results(nats_url, 3)})
        await consumer_settled(nats_url)

    assert [parseaddr(m["To"])[1] for m in smtp_server.recorder.messages] == ["camille2@exemple.fr"]
    assert (reported["job-1"].status, reported["job-1"].reason) == (DeliveryStatus.failed, "suppressed")
    assert reported["job-2"].status is DeliveryStatus.delivered
    assert (reported["job-3"].status, reported["job-3"].reason) == (DeliveryStatus.failed, "suppressed")


async def test_jobs_of_a_withdrawn_message_are_dropped_not_sent(nats_url, smtp_server):
    """Staff withdraw a message while its jobs wait: they are reported
    failed/withdrawn and no email leaves; other messages' jobs still go."""
    feed = Bus(FEED, nats_url)
    await feed.connect()
    withdrawn = MessageWithdrawn(message_id="m-retire")
    await feed.publish(MESSAGE_WITHDRAWN, withdrawn, msg_id=withdrawn.event_id)
    await feed.stop()

    async with dispatcher(nats_url, smtp_server) as (contacts, _suppressed):
        await contacts.publish(EMAIL_JOB, job(1, message_id="m-retire"), msg_id="job-1")
        await contacts.publish(EMAIL_JOB, job(2), msg_id="job-2")
        reported = {r.job_id: r for r, _ in await results(nats_url, 2)}
        await consumer_settled(nats_url)

    assert [parseaddr(m["To"])[1] for m in smtp_server.recorder.messages] == ["camille2@exemple.fr"]
    assert (reported["job-1"].status, reported["job-1"].reason) == (DeliveryStatus.failed, "withdrawn")
    assert reported["job-2"].status is DeliveryStatus.delivered
