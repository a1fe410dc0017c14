"""Bounces: delivery status notifications (RFC 3464) read by the email
dispatcher's authenticated endpoint; hard bounces become
``dispatch.email.bounces`` events (job id, address hash: no address)."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart

import nats
import pytest
from fastapi.testclient import TestClient

from services.dispatch.app import create_email_app
from services.dispatch.dsn import NotADsn, read_dsn
from services.dispatch.email_domain import compose
from services.dispatch.ledger import open_ledger
from shared.catalogue import DISPATCH_BOUNCES_STREAM, EMAIL_BOUNCE
from shared.events import BounceReported
from tests.test_dispatch_email import FROM, LIST_ID, job, settings

TOKEN = "bounce-token-0123456789abcdef"


def dsn(original: EmailMessage | None, *recipients: tuple[str, str, str], headers_only: bool = False) -> bytes:
    """A DSN as an MTA (Postfix) writes it: ``(address, action, status)`` per recipient."""
    blocks = "".join(
        f"Final-Recipient: rfc822; {address}\r\nOriginal-Recipient: rfc822;{address}\r\n"
        f"Action: {action}\r\nStatus: {code}\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{address}>: Recipient address rejected\r\n\r\n"
        for address, action, code in recipients)
    returned = b""
    if original is not None:
        kind = "text/rfc822-headers" if headers_only else "message/rfc822"
        body = original.as_bytes()
        body = body.split(b"\n\n", 1)[0] + b"\n" if headers_only else body
        returned = f"--B0UND\r\nContent-Type: {kind}\r\n\r\n".encode() + body + b"\r\n"
    return (
        "From: MAILER-DAEMON@mx.exemple.fr (Mail Delivery System)\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\nMIME-Version: 1.0\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"B0UND\"\r\n\r\n"
        "--B0UND\r\nContent-Type: text/plain\r\n\r\nThis is the mail system at host mx.exemple.fr.\r\n\r\n"
        "--B0UND\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.exemple.fr\r\nArrival-Date: Tue, 24 Nov 2026 10:00:00 +0100\r\n\r\n"
        f"{blocks}"
    ).encode() + returned + b"--B0UND--\r\n"


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
