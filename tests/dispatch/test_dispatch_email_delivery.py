"""The email dispatcher's delivery semantics over a real nats-server and a
real aiosmtpd server: personalised multipart mail, DKIM verified by dkimpy,
4xx retried with backoff and a slower pace, dead letters, the sent ledger
(SQLite and PostgreSQL), rate limits that survive a restart."""

from __future__ import annotations

import email
import email.policy
import re
import time

import dkim
import nats
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jinja2.exceptions import SecurityError

from services.dispatch.email.domain.message import compose
from services.dispatch.email.domain.render import Templates
from services.dispatch.email.ledger import open_ledger
from services.dispatch.email.limits import SendLimits
from services.dispatch.email.settings import EmailDispatchSettings
from services.dispatch.rate_limit import Throttle, TokenBucket
from shared.catalogue import DISPATCH_DEAD_STREAM, EMAIL_DEAD, EMAIL_JOB
from shared.events import DeadLetter, DeliveryStatus
from tests.support.dispatch_email import (
    FROM,
    LIST_ID,
    consumer_settled,
    dispatcher,
    html_of,
    job,
    results,
    sealed,
    settings,
    text_of,
)
from tests.support.paths import ROOT
from tests.support.servers import RawRecorder, SmtpRecorder

# -- personalisation ------------------------------------------------------------------------------


def test_each_contact_gets_their_first_name_and_the_volunteers_note_escaped_in_html():
    j = job(1, recipient_name="Zoé <b>Ruiz</b>", note="On en parlait au marché <script>x()</script> !",
            body_text="Venez **jeudi** à l'école. <img src=x onerror=alert(1)>")
    msg = compose(j, FROM, LIST_ID)
    text, html = text_of(msg), html_of(msg)
    assert text.startswith("Bonjour Zoé,\n\nOn en parlait au marché <script>x()</script> !\n\nVenez **jeudi**")
    assert "Bonjour Zoé," in html
    assert "&lt;script&gt;x()&lt;/script&gt;" in html and "<script>" not in html  # autoescaped note
    assert "<strong>jeudi</strong>" in html  # the campaign's Markdown, rendered
    assert "<img" not in html and "&lt;img src=x" in html  # raw HTML in it is text, not markup
    assert f'href="{j.unsubscribe_url}"' in html


def test_a_relay_renders_its_frame_once_and_each_contact_exactly_as_a_direct_render():
    """The per-relay frame (see email.domain.render.Templates) gives each contact
    the bytes Jinja would, escaping and {% if %} included, even for values
    that look like the frame's own markers."""
    templates = Templates()
    same = "Le même message, **pour tous**."
    contacts = [job(1, body_text=same), job(2, body_text=same, recipient_name="", note=None),
                job(3, body_text=same, recipient_name="Zoé <b>&", note="a\x1efirst_name\x1e"),
                job(4, body_text=same, note="  <i>deux</i>\n& trois  ")]
    for j in contacts:
        assert templates.render(j) == templates._direct(templates._values(j))
    assert len(templates._frames) == 3  # one per (name?, note?) shape of the same relay
    filtered = Templates(text="{{ first_name | upper }} {{ unsubscribe_url }}")
    assert not filtered._framed and filtered.render(job(5))[0].startswith("CAMILLE ")


def test_templates_are_sandboxed():
    hostile = Templates(text="{{ first_name.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(SecurityError):
        hostile.render(job(1))


# -- DKIM ---------------------------------------------------------------------------------------------


def rsa_key() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    import base64
    return pem, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


@pytest.fixture
def raw_smtp():
    from aiosmtpd.controller import Controller

    from tests.support.servers import SmtpServer
    from tools.stack import free_port

    recorder, port = RawRecorder(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    yield SmtpServer("127.0.0.1", port, recorder)
    controller.stop()


async def test_a_dkim_signed_email_verifies_as_received(nats_url, raw_smtp, tmp_path):
    pem, dns_record = rsa_key()
    key_path = tmp_path / "dkim.pem"
    key_path.write_bytes(pem)
    async with dispatcher(nats_url, raw_smtp, dkim_selector="m2026", dkim_key_path=key_path) as (contacts, _):
        await contacts.publish(EMAIL_JOB, job(1), msg_id="job-1")
        await raw_smtp.recorder.await_count(1)
    received = raw_smtp.recorder.raw[0]
    asked = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        asked.append(name)
        return dns_record if name == b"m2026._domainkey.campagne.example." else b""

    assert received.startswith(b"DKIM-Signature:")
    signature = email.message_from_bytes(received)["DKIM-Signature"]
    for tag in ("d=campagne.example", "s=m2026", "list-unsubscribe", "list-unsubscribe-post", "reply-to"):
        assert tag in signature.lower().replace(" ", "").replace("\r\n", "").replace("\t", "")
    assert dkim.verify(received, dnsfunc=dns)
    assert asked == [b"m2026._domainkey.campagne.example."]
    tampered = received.replace(b"Les =C3=A9coles", b"Les =C3=A9glises")
    tampered = tampered if tampered != received else received.replace(b"Subject:", b"Subject: X", 1)
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_a_dkim_key_needs_a_selector():
    with pytest.raises(ValueError, match="dkim_selector"):
        settings("127.0.0.1", 1, dkim_private_key="-----BEGIN PRIVATE KEY-----")


# -- retries, back-off, dead letters ----------------------------------------------------------------


class Flaky(SmtpRecorder):
    """Answers ``reply`` to the first ``times`` RCPTs of each address."""

    def __init__(self, reply: str, times: int) -> None:
        super().__init__()
        self.reply, self.times, self.seen = reply, times, {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.seen[address] = self.seen.get(address, 0) + 1
        if self.seen[address] <= self.times:
            return self.reply
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)


def flaky_server(reply: str, times: int):
    from aiosmtpd.controller import Controller

    from tests.support.servers import SmtpServer
    from tools.stack import free_port

    recorder, port = Flaky(reply, times), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    return controller, SmtpServer("127.0.0.1", port, recorder)


async def test_a_4xx_is_retried_with_backoff_and_slows_the_sender(nats_url):
    controller, server = flaky_server("451 4.7.1 slow down please", times=2)
    try:
        started = time.monotonic()
        async with dispatcher(nats_url, server, max_deliver=5) as (contacts, _):
            await contacts.publish(EMAIL_JOB, job(1), msg_id="job-1")
            reported = await results(nats_url, 1, timeout=20)
            await consumer_settled(nats_url)
        took = time.monotonic() - started
    finally:
        controller.stop()
    assert server.recorder.seen["camille1@exemple.fr"] == 3  # two 451s, then accepted
    assert [m["To"] for m in server.recorder.messages] == ["Camille Dupont1 <camille1@exemple.fr>"]
    assert reported[0][0].status is DeliveryStatus.delivered
    assert took >= 1.0 + 2.0 - 0.2  # redelivered after 1 s, then 2 s


async def test_exhausted_retries_go_to_the_dead_letter_stream_and_a_failed_result(nats_url):
    controller, server = flaky_server("421 4.3.2 try later", times=99)
    try:
        async with dispatcher(nats_url, server, max_deliver=2) as (contacts, _):
            await contacts.publish(EMAIL_JOB, job(1), msg_id="job-1")
            await contacts.publish(EMAIL_JOB, job(2), msg_id="job-2")
            reported = {r.job_id: r for r, _ in await results(nats_url, 2, timeout=20)}
            await consumer_settled(nats_url)
    finally:
        controller.stop()
    assert server.recorder.messages == []
    assert server.recorder.seen == {"camille1@exemple.fr": 2, "camille2@exemple.fr": 2}
    for n in (1, 2):
        assert reported[f"job-{n}"].status is DeliveryStatus.failed
        assert reported[f"job-{n}"].reason == "retries exhausted (smtp 421)"
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        sub = await js.subscribe(EMAIL_DEAD.pattern, stream=DISPATCH_DEAD_STREAM.name, ordered_consumer=True)
        dead = [DeadLetter.model_validate_json((await sub.next_msg(timeout=5)).data) for _ in range(2)]
        raw = b"".join(m.model_dump_json().encode() for m in dead)
    finally:
        await nc.close()
    assert sorted(d.job_id for d in dead) == ["job-1", "job-2"]
    assert all(d.attempts == 2 and d.reason == "smtp 421" for d in dead)
    assert b"camille" not in raw  # ids only: the address stays in the (acked) job


# -- the sent ledger ------------------------------------------------------------------------------------


async def test_the_ledger_remembers_sends_failures_and_rates(db_url):
    ledger = open_ledger(db_url)
    await ledger.open()
    try:
        assert not await ledger.was_sent("job-1")
        now = time.time()
        await ledger.record_sent("job-1", "vol-a", "a" * 64, at=now - 10)
        await ledger.record_sent("job-1", "vol-a", "a" * 64, at=now)  # a second write changes nothing
        await ledger.record_sent("job-2", "vol-a", "b" * 64, at=now - 7200)
        await ledger.record_sent("job-3", "vol-b", "c" * 64, at=now)
        assert await ledger.was_sent("job-1") and not await ledger.was_sent("job-9")
        assert await ledger.recipient_of("job-2") == "b" * 64
        assert await ledger.sent_since("vol-a", now - 3600) == 1
        assert [await ledger.add_failure("job-4") for _ in range(3)] == [1, 2, 3]
        await ledger.prune(older_than_days=1 / 24)  # an hour
        assert await ledger.recipient_of("job-2") is None and await ledger.was_sent("job-1")
        assert await ledger.ready() == (True, type(ledger).__name__)
    finally:
        await ledger.close()


async def test_a_job_in_the_ledger_is_not_sent_again_but_reported(nats_url, smtp_server, tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_ledger(url)
    await ledger.open()
    await ledger.record_sent("job-1", "vol-alice", job(1).recipient_hash)  # sent before a crash
    await ledger.close()
    async with dispatcher(nats_url, smtp_server, ledger_url=url) as (contacts, _):
        await contacts.publish(EMAIL_JOB, job(1), msg_id="job-1")
        await contacts.publish(EMAIL_JOB, job(2), msg_id="job-2")
        reported = {r.job_id: r for r, _ in await results(nats_url, 2)}
        await consumer_settled(nats_url)
    assert [m["To"] for m in smtp_server.recorder.messages] == ["Camille Dupont2 <camille2@exemple.fr>"]
    assert reported["job-1"].status is DeliveryStatus.delivered  # its result, in case it was lost


# -- rate limits ------------------------------------------------------------------------------------------


def test_token_bucket_queues_callers_in_order():
    bucket = TokenBucket.empty(rate=2.0, burst=2.0, now=0.0)
    assert [bucket.reserve(0.0) for _ in range(3)] == [0.5, 1.0, 1.5]
    bucket = TokenBucket.after(rate=1.0, burst=10.0, spent=8, now=0.0)
    assert [bucket.reserve(0.0) for _ in range(3)] == [0.0, 0.0, 1.0]
    assert TokenBucket.after(1.0, 10.0, 0, 0.0).reserve(100.0) == 0.0  # never more than the burst saved


def test_throttle_doubles_on_421_and_relaxes_on_success():
    t = Throttle()
    t.slow_down()
    t.slow_down()
    assert t.pause == pytest.approx(0.1)
    for _ in range(40):
        t.succeeded()
    assert t.pause == 0.0
    for _ in range(20):
        t.slow_down()
    assert t.pause == t.ceiling


async def test_the_volunteer_limit_is_read_back_from_the_ledger_after_a_restart(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    config = settings("127.0.0.1", 1, ledger_url=url, volunteer_rate_per_hour=10)
    ledger = open_ledger(url)
    await ledger.open()
    limits = SendLimits(config, ledger, clock=lambda: 0.0)
    assert [await limits.volunteer_turn("vol-a") for _ in range(10)] == [0.0] * 10
    for n in range(10):  # what the dispatcher writes after each 250
        await ledger.record_sent(f"j{n}", "vol-a", "a" * 64)
    assert await limits.volunteer_turn("vol-a") == pytest.approx(360.0)
    await ledger.close()

    ledger = open_ledger(url)  # a new process: the hour is not handed out again
    await ledger.open()
    restarted = SendLimits(config, ledger, clock=lambda: 0.0)
    assert await restarted.volunteer_turn("vol-a") == pytest.approx(360.0)
    assert await restarted.volunteer_turn("vol-b") == 0.0
    await ledger.close()


async def test_jobs_over_the_volunteers_rate_are_deferred_not_dropped(nats_url, smtp_server, tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_ledger(url)
    await ledger.open()
    for n in range(3600):  # the volunteer's hour is spent
        await ledger.record_sent(f"old-{n}", "vol-alice", "a" * 64)
    await ledger.close()
    async with dispatcher(nats_url, smtp_server, ledger_url=url, volunteer_rate_per_hour=3600) as (contacts, _):
        started = time.monotonic()
        for n in range(1, 4):
            await contacts.publish(EMAIL_JOB, job(n), msg_id=f"job-{n}")
        await smtp_server.recorder.await_count(3)
        took = time.monotonic() - started
        await results(nats_url, 3)
        await consumer_settled(nats_url)
    assert 2.5 <= took < 8  # one a second: due at 1, 2 and 3 s
    assert sorted(m["To"] for m in smtp_server.recorder.messages) == [
        f"Camille Dupont{n} <camille{n}@exemple.fr>" for n in range(1, 4)]


# -- configuration -------------------------------------------------------------------------------------


def test_env_example_lists_every_email_dispatch_setting():
    listed = set(re.findall(r"^(MAILLAGE_DISPATCH_EMAIL_[A-Z_]+)=", (ROOT / "deploy/env.example").read_text(), re.M))
    wanted = {f"MAILLAGE_DISPATCH_EMAIL_{name.upper()}" for name in EmailDispatchSettings.model_fields
              if name != "common"}
    assert wanted <= listed, sorted(wanted - listed)


# -- authentication ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # a test server, on loopback
async def test_the_pool_logs_in_with_the_configured_account():
    import aiosmtplib
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from services.dispatch.email.domain.message import Outcome, classify_smtp_code, wire
    from services.dispatch.email.smtp import SmtpPool
    from tests.support.dispatch_email import plain
    from tools.stack import free_port

    logins = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((mechanism, auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"s3cret")

    recorder, port = SmtpRecorder(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_required=True, auth_require_tls=False)
    controller.start()
    try:
        good = SmtpPool(settings("127.0.0.1", port, smtp_username="relais", smtp_password="s3cret"))
        await good.send(FROM, "camille1@exemple.fr", wire(plain(1)))
        await good.close()
        assert [m["Subject"] for m in await recorder.await_count(1)] == ["n°1"]
        assert logins[0][1:] == (b"relais", b"s3cret")

        bad = SmtpPool(settings("127.0.0.1", port, smtp_username="relais", smtp_password="wrong")
                       .model_copy(update={"smtp_timeout": 1.0}))
        with pytest.raises(aiosmtplib.SMTPException):
            await bad.send(FROM, "camille2@exemple.fr", wire(plain(2)))
        await bad.close()
        assert len(recorder.messages) == 1 and logins[-1][2] == b"wrong"
        assert classify_smtp_code(535) is Outcome.failed  # a refused login is not retried
    finally:
        controller.stop()


# -- the volunteer's own SMTP account -------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # a test server, on loopback
async def test_a_job_with_the_volunteers_own_account_goes_through_their_server(nats_url, smtp_server):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from tools.stack import free_port

    account = {"host": "127.0.0.1", "security": "none", "username": "alice", "password": "mdp-alice",
               "from_address": "alice.martin@perso.example"}

    def authenticator(server, session, envelope, mechanism, auth_data):
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"alice", b"mdp-alice"))

    own, port = SmtpRecorder(), free_port()
    controller = Controller(own, hostname="127.0.0.1", port=port, authenticator=authenticator,
                            auth_required=True, auth_require_tls=False)
    controller.start()
    account["port"] = port
    try:
        via_own = sealed(job(1, smtp_account=account))
        # job 1's sealed content (its account with it) lifted into another job
        lifted = sealed(job(2)).model_copy(update={"sealed": via_own.sealed})
        # the volunteer's server is on loopback: reached through the allow-list (shared.egress)
        async with dispatcher(nats_url, smtp_server, egress_allow=f"127.0.0.1:{port}") as (contacts, _):
            for j in (via_own, lifted, job(3)):
                await contacts.publish(EMAIL_JOB, j, msg_id=j.job_id)
            reported = {r.job_id: r for r, _ in await results(nats_url, 3)}
            await consumer_settled(nats_url)
    finally:
        controller.stop()
    [mail] = own.messages  # the volunteer's server got theirs, from their own address
    assert mail["From"] == "Alice Martin <alice.martin@perso.example>" and mail["To"].endswith("<camille1@exemple.fr>")
    assert own.envelopes == [("alice.martin@perso.example", ["camille1@exemple.fr"])]
    assert [m["To"] for m in smtp_server.recorder.messages] == ["Camille Dupont3 <camille3@exemple.fr>"]
    assert reported["job-1"].status is DeliveryStatus.delivered
    assert (reported["job-2"].status, reported["job-2"].reason) == (DeliveryStatus.failed, "unreadable")
    assert reported["job-3"].status is DeliveryStatus.delivered


def test_an_own_account_never_sends_its_password_in_clear_over_a_network():
    from pydantic import ValidationError

    from shared.smtp_identity import SmtpIdentity as OwnAccount  # what a job's sealed content holds

    fields = dict(port=587, username="a", password="p", from_address="a@perso.example")
    assert OwnAccount(host="smtp.perso.example", security="starttls", **fields)
    with pytest.raises(ValidationError, match="this machine only"):
        OwnAccount(host="smtp.perso.example", security="none", **fields)
    assert "password" not in repr(OwnAccount(host="localhost", security="none", **fields))
