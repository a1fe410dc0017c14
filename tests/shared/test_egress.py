"""Issue 11, finding 5: SSRF through volunteer-supplied addresses.

A volunteer names a Mastodon instance, a Bluesky PDS, their own SMTP
server; the dispatchers connect there from inside our network. These tests
perform the attack: the policy's unit rules (every refused range, IPv6
forms, other spellings of 127.0.0.1, smuggled paths and users, names that
resolve inward, DNS rebinding), then each adapter aimed at a listener on
127.0.0.1, at a real nats-server's port and at PostgreSQL's 5432, with the
allow-list empty: nothing is reached (no connect() from this process, no
connection accepted) and the outcome is the typed refusal. With the
allow-list naming the listener, the same adapter works: the test can see a
connection when there is one. Contacts refuses the same addresses at
input with a 422 naming the field."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiosmtplib
import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from services.contacts.app import create_app as create_contacts_app
from services.contacts.book import open_book
from services.contacts.networks import connected_credentials
from services.contacts.store import Volunteer
from services.dispatch.email.smtp import SmtpAccount, SmtpPool
from services.dispatch.social.bluesky import BlueskyPoster
from services.dispatch.social.domain import Verdict
from services.dispatch.social.mastodon import MastodonPoster
from services.dispatch.social.x import XPoster
from shared.catalogue import EMAIL_JOB, MASTODON_JOB
from shared.egress import (
    REASON,
    EgressPolicy,
    EgressRefused,
    PinnedClient,
    _PinnedBackend,
    origin,
    refused_address,
    require_pinned,
)
from shared.events import Channel, DeliveryStatus
from shared.settings import CommonSettings
from tests.support.apps import contacts_settings
from tests.support.http_api import loc_of, new_volunteer
from tests.support.servers import SmtpServer, start_nats
from tests.support.social import BSKY, post_job
from tools.stack import free_port, nats_server_binary, wait_for_port

PG_PORT = 5432

# -- what this process connects to: every socket.connect(), from the audit hook ------------------

CONNECTS: list[tuple] = []


def _audit(event: str, args: tuple) -> None:
    if event == "socket.connect":
        CONNECTS.append(args[1])


sys.addaudithook(_audit)  # for the process's life: it only appends addresses


def connected_to(port: int) -> list[tuple]:
    return [a for a in CONNECTS if isinstance(a, tuple) and len(a) >= 2 and a[1] == port]


class Listener:
    """A TCP listener on 127.0.0.1 that counts the connections it accepts, and
    forwards them to ``upstream`` when given (so an allowed adapter works)."""

    def __init__(self, upstream: int | None = None) -> None:
        self.upstream, self.accepted = upstream, 0
        self.port = free_port()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.upstream is None:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def __aenter__(self) -> Listener:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        self.server.close()


# -- the stack's own ports: a real nats-server (with its monitoring port) and PostgreSQL -----------


class Nats:
    def __init__(self, store: Path) -> None:
        self.port, self.monitor = free_port(), free_port()
        self.process = subprocess.Popen([nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port),
                                         "-m", str(self.monitor), "-js", "-sd", str(store)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port, 10)
        wait_for_port(self.monitor, 10)

    def total_connections(self) -> int:
        return httpx.get(f"http://127.0.0.1:{self.monitor}/varz", timeout=5).json()["total_connections"]


@pytest.fixture
def nats(tmp_path: Path) -> Iterator[Nats]:
    server = Nats(tmp_path / "js")
    yield server
    server.process.terminate()
    server.process.wait(10)


async def no_resolver(host: str, port: int) -> list[str]:
    raise AssertionError(f"{host} was resolved: it must be refused before any lookup")


def stub(answers: dict[str, list[str]]):
    async def resolve(host: str, port: int) -> list[str]:
        return answers[host]
    return resolve


# -- the policy's rules ---------------------------------------------------------------------------------

REFUSED = [
    "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "169.254.0.1",
    "100.64.0.1", "100.100.100.200", "0.0.0.0", "224.0.0.1", "239.255.255.250", "255.255.255.255", "240.0.0.1",
    "192.0.0.1", "198.18.0.1", "192.0.2.1",
    "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "ff02::1", "fec0::1", "2001:db8::1", "2001::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:1", "64:ff9b:1::1",
    "2002:7f00:1::1", "2002:a9fe:a9fe::", "2002:c0a8:101::1",
]
PUBLIC = ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4007:80f::200e",
          "64:ff9b::5db8:d822", "2002:5db8:d822::1"]


@pytest.mark.parametrize("address", REFUSED)
def test_every_inward_range_is_refused_as_a_literal(address):
    assert refused_address(ipaddress.ip_address(address)) is not None
    url = f"https://[{address}]" if ":" in address else f"https://{address}"
    with pytest.raises(EgressRefused) as refused:
        EgressPolicy(resolver=no_resolver).check_origin(url)
    assert refused.value.rule == "address"


@pytest.mark.parametrize("address", PUBLIC)
def test_public_unicast_addresses_pass(address):
    assert refused_address(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("url", [
    "http://2130706433/", "https://2130706433", "https://0x7f000001", "https://0x7f.0.0.1", "https://0177.0.0.1",
    "https://127.1", "https://127.0.0.1.", "https://127.0.0.01", "https://localhost", "https://localhost.",
    "https://LOCALHOST:8443", "https://api.localhost", "https://[::ffff:7f00:1]", "https://[::1]:8443",
    "https://evil@127.0.0.1", "https://evil@mastodon.social", "https://user:pw@mastodon.social",
    "https://mastodon.social@127.0.0.1", "https://mastodon.social\\@127.0.0.1",
    "https://mastodon.social/internal/admin?x=", "https://mastodon.social/api", "https://mastodon.social?x=1",
    "https://mastodon.social#frag", "https://mastodon.social/ x", "https://masto don.social",
    "http://mastodon.social", "ftp://mastodon.social", "file:///etc/passwd", "gopher://127.0.0.1:4222/_PUB",
    "mastodon.social", "//mastodon.social", "https://mastodon.social:0", "https://mastodon.social:99999",
    "https://[fd00:ec2::254]", "https://169.254.169.254", "https://[::ffff:169.254.169.254]",
    "https://\u0131nstance.example%2f..", "https://", "https:///x", "https://１２７.０.０.１", "https://127。0。0。1",
    "https://ⅼocalhost", "https://[fe80::1%25eth0]",
])
def test_smuggled_and_respelled_addresses_are_refused(url):
    with pytest.raises(EgressRefused):
        EgressPolicy(resolver=no_resolver).check_origin(url)


@pytest.mark.parametrize(("url", "kept"), [
    ("https://mastodon.social", "https://mastodon.social"),
    ("https://Mastodon.Social./", "https://mastodon.social"),
    ("https://mastodon.social:443", "https://mastodon.social"),
    ("https://pds.example.org:8443/", "https://pds.example.org:8443"),
    ("https://[2606:4700:4700::1111]", "https://[2606:4700:4700::1111]"),
    ("https://bücher.example", "https://xn--bcher-kva.example"),
])
def test_an_origin_is_kept_as_its_origin_only(url, kept):
    assert EgressPolicy(resolver=no_resolver).check_origin(url).url == kept == origin(kept).url


@pytest.mark.parametrize(("name", "answers"), [
    ("127.0.0.1.nip.io", ["127.0.0.1"]),
    ("metadata.google.internal", ["169.254.169.254"]),
    ("mixed.example", ["93.184.216.34", "10.0.0.7"]),  # ANY bad address refuses the name
    ("mixed6.example", ["2606:4700:4700::1111", "::ffff:127.0.0.1"]),
    ("nat64.example", ["64:ff9b::7f00:1"]),
    ("cgnat.example", ["100.64.12.1"]),
])
async def test_a_name_resolving_inward_is_refused(name, answers):
    policy = EgressPolicy(resolver=stub({name: answers}))
    with pytest.raises(EgressRefused, match="resolves to"):
        await policy.addresses(name, 443)
    with pytest.raises(EgressRefused):
        await policy.check_input(name, 443)


async def test_a_public_name_resolves_to_the_addresses_that_were_checked():
    policy = EgressPolicy(resolver=stub({"mastodon.example": ["93.184.216.34", "2606:4700:4700::1111"]}))
    assert await policy.addresses("Mastodon.Example.", 443) == ["93.184.216.34", "2606:4700:4700::1111"]


async def test_a_name_that_does_not_resolve_passes_input_and_fails_the_connection_as_a_network_error():
    async def nxdomain(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")
    policy = EgressPolicy(resolver=nxdomain)
    await policy.check_input("typo.example", 443)  # the dispatcher checks again at each connection
    with pytest.raises(OSError):
        await policy.addresses("typo.example", 443)


async def test_localhost_is_refused_without_a_lookup():
    policy = EgressPolicy(resolver=no_resolver)
    for name in ("localhost", "LocalHost.", "x.localhost"):
        with pytest.raises(EgressRefused):
            await policy.addresses(name, 443)


async def test_the_allow_list_exempts_exactly_its_host_port_pairs():
    policy = EgressPolicy("127.0.0.1:8443, localhost:2525,[::1]:25", resolver=stub({"localhost": ["127.0.0.1"]}))
    assert policy.check_origin("http://127.0.0.1:8443").url == "http://127.0.0.1:8443"
    assert await policy.addresses("localhost", 2525) == ["127.0.0.1"]
    assert await policy.addresses("::1", 25) == ["::1"]
    for url in ("http://127.0.0.1:8444", "https://127.0.0.1", "http://localhost:8443", "https://127.0.0.2:8443"):
        with pytest.raises(EgressRefused):
            policy.check_origin(url)
    assert policy.check_smtp("localhost", 2525, "none") == "localhost"
    with pytest.raises(EgressRefused) as clear:
        policy.check_smtp("smtp.example.org", 25, "none")
    assert clear.value.rule == "scheme"
    with pytest.raises(ValueError, match="host:port"):
        EgressPolicy("127.0.0.1")
    with pytest.raises(ValueError, match="host:port"):  # the setting refuses it at start
        CommonSettings(egress_allow="127.0.0.1,localhost:2525")


def test_an_adapter_refuses_a_client_that_is_not_pinned():
    for make in (lambda h: MastodonPoster(h), lambda h: BlueskyPoster(h), lambda h: XPoster(h)):
        with pytest.raises(TypeError, match="PinnedClient"):
            make(httpx.AsyncClient())
        with pytest.raises(TypeError):
            make(PinnedClient(EgressPolicy(), follow_redirects=True))
    assert isinstance(require_pinned(PinnedClient(EgressPolicy())), EgressPolicy)


# -- DNS rebinding: the connection goes to the address that was checked ---------------------------------


class Recording(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self.connects: list[tuple[str, int]] = []

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        self.connects.append((host, port))
        raise httpcore.ConnectError("recorded, not connected")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def test_dns_rebinding_never_reaches_the_second_answer():
    answers = iter([["93.184.216.34"], ["127.0.0.1"], ["127.0.0.1"]])
    lookups: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return next(answers)

    backend = _PinnedBackend(EgressPolicy(resolver=rebinding))
    backend.inner = recording = Recording()
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp("rebind.example", 443)
    # one lookup, and the socket went to the checked answer, not to a name a second lookup would turn inward
    assert lookups == ["rebind.example"] and recording.connects == [("93.184.216.34", 443)]
    with pytest.raises(EgressRefused):  # the next connection looks up again: now it is refused
        await backend.connect_tcp("rebind.example", 443)
    assert recording.connects == [("93.184.216.34", 443)]


async def test_the_pinned_client_connects_to_the_policys_answer_not_its_own_lookup():
    # rebind.example exists in no DNS: if httpx looked the name up itself, this could not connect
    async with Listener() as listener:
        policy = EgressPolicy(f"rebind.example:{listener.port}", resolver=stub({"rebind.example": ["127.0.0.1"]}))
        async with PinnedClient(policy, timeout=5) as http:
            with pytest.raises(httpx.HTTPError):  # the listener closes at once
                await http.get(f"http://rebind.example:{listener.port}/")
    assert listener.accepted == 1 and ("127.0.0.1", listener.port) in connected_to(listener.port)


def _certificate(name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, bytes, list[str]]]:
    """An https server on 127.0.0.1 with a certificate for pds.example; it records the SNI and Host it was sent."""
    cert, key = _certificate("pds.example")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    seen: list[str] = []
    context.sni_callback = lambda sock, name, ctx: seen.append(f"sni={name}")

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.extend(line.decode() for line in head.split(b"\r\n") if line.lower().startswith(b"host:"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(answer, "127.0.0.1", port, ssl=context)
    yield port, cert, seen
    server.close()


async def test_tls_still_verifies_the_name_on_a_pinned_connection(tls_server):
    port, cert, seen = tls_server
    trust = ssl.create_default_context(cadata=cert.decode())
    names = stub({"pds.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
    policy = EgressPolicy(f"pds.example:{port},other.example:{port}", resolver=names)
    async with PinnedClient(policy, verify=trust, timeout=5) as http:
        r = await http.get(f"https://pds.example:{port}/")
        assert (r.status_code, r.text) == (200, "ok")
        assert seen == ["sni=pds.example", f"Host: pds.example:{port}"]  # the name, not the address
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED|match|hostname"):
            await http.get(f"https://other.example:{port}/")  # same address, a name its certificate is not for


async def test_smtp_tls_still_verifies_the_name_on_a_pinned_socket(tmp_path, monkeypatch):
    from aiosmtpd.controller import Controller

    from tests.support.servers import SmtpRecorder

    cert, key = _certificate("smtp.example")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "cert.pem"))  # aiosmtplib's default context trusts it
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    seen: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: seen.append(name)
    recorder, port = SmtpRecorder(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, ssl_context=context)
    controller.start()
    seen.clear()  # the controller's own start-up probe
    try:
        names = stub({"smtp.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
        policy = EgressPolicy(f"smtp.example:{port},other.example:{port}", resolver=names)
        pool = SmtpPool(SmtpAccount("smtp.example", port, tls=True, timeout=5, egress=policy))
        await pool.send("alice@perso.example", "ami@exemple.fr", b"Subject: tls\r\n\r\nx\r\n")
        await pool.close()
        assert seen == ["smtp.example"] and len(recorder.messages) == 1  # SNI: the name, not the address
        other = SmtpPool(SmtpAccount("other.example", port, tls=True, timeout=5, egress=policy))
        with pytest.raises(aiosmtplib.SMTPConnectError, match="CERTIFICATE_VERIFY_FAILED|match|hostname"):
            await other.send("alice@perso.example", "ami@exemple.fr", b"Subject: tls\r\n\r\nx\r\n")
        assert len(recorder.messages) == 1
    finally:
        controller.stop()


# -- each adapter aimed inward, allow-list empty: nothing reached, typed refusal -----------------------


def inward(port: int) -> list[str]:
    """The ways a volunteer may write 'this machine, that port'."""
    return [f"https://127.0.0.1:{port}", f"http://127.0.0.1:{port}/internal/admin?x=", f"https://localhost:{port}",
            f"https://[::ffff:127.0.0.1]:{port}", f"https://[::1]:{port}", f"https://2130706433:{port}",
            f"https://evil@127.0.0.1:{port}", f"https://0.0.0.0:{port}"]


async def attack_every_adapter(port: int) -> list[tuple[str, object]]:
    """Aim Mastodon, Bluesky (credentials and setting), X and own SMTP at ``port``
    on this machine with the allow-list empty; return what each answered."""
    answers: list[tuple[str, object]] = []
    async with PinnedClient(EgressPolicy(), timeout=3) as http:
        mastodon, bluesky = MastodonPoster(http), BlueskyPoster(http)
        for url in inward(port):
            outcome, _ = await mastodon.post(post_job(1), {"instance_url": url, "access_token": "tok-alice"})
            answers.append(("mastodon", (outcome.verdict, outcome.reason)))
            outcome, _ = await bluesky.post(post_job(1), {**BSKY, "service_url": url})
            answers.append(("bluesky", (outcome.verdict, outcome.reason)))
            outcome, _ = await BlueskyPoster(http, service_url=url).post(post_job(1), BSKY)
            answers.append(("bluesky default", (outcome.verdict, outcome.reason)))
            try:
                XPoster(http, api_url=url)
                answers.append(("x", "started"))
            except EgressRefused:
                answers.append(("x", "refused at start"))
    for host in ("127.0.0.1", "localhost", "::1", "::ffff:127.0.0.1", "0.0.0.0", "2130706433"):
        for security in ("starttls", "tls", "none"):
            pool = SmtpPool(SmtpAccount(host, port, "alice", "pw", starttls=security == "starttls",
                                        tls=security == "tls", timeout=3, egress=EgressPolicy()))
            try:
                await pool.send("alice@perso.example", "bob@exemple.fr", b"Subject: x\r\n\r\nx")
                answers.append(("own smtp", "sent"))
            except EgressRefused:
                answers.append(("own smtp", "refused"))
            except OSError as exc:
                answers.append(("own smtp", type(exc).__name__))
    return answers


def all_refused(answers: list[tuple[str, object]]) -> None:
    expected = {"mastodon": (Verdict.failed, REASON), "bluesky": (Verdict.failed, REASON),
                "bluesky default": (Verdict.failed, REASON), "x": "refused at start", "own smtp": "refused"}
    assert [(who, got) for who, got in answers if got != expected[who]] == []


async def test_no_adapter_reaches_a_listener_on_this_machine():
    async with Listener() as listener:
        CONNECTS.clear()
        answers = await attack_every_adapter(listener.port)
        await asyncio.sleep(0.1)
    all_refused(answers)
    assert listener.accepted == 0 and connected_to(listener.port) == []


async def test_no_adapter_reaches_nats_or_postgresql(nats):
    before = nats.total_connections()
    CONNECTS.clear()
    for port in (nats.port, PG_PORT):
        all_refused(await attack_every_adapter(port))
    assert connected_to(nats.port) == [] and connected_to(PG_PORT) == []
    assert nats.total_connections() == before
    # the counter sees a connection when there is one
    _, writer = await asyncio.open_connection("127.0.0.1", nats.port)
    writer.close()
    await asyncio.sleep(0.2)
    assert nats.total_connections() == before + 1


async def test_a_name_resolving_inward_is_refused_at_connection_time_by_every_adapter():
    # a stubbed resolver stands in for DNS: the name passes every static check, only its answer is inward
    async with Listener() as listener:
        name = "inward.example"
        policy = EgressPolicy(resolver=stub({name: ["127.0.0.1"]}))
        url = f"https://{name}:{listener.port}"
        async with PinnedClient(policy, timeout=3) as http:
            mastodon, _ = await MastodonPoster(http).post(post_job(1), {"instance_url": url, "access_token": "tok-alice"})
            bluesky, _ = await BlueskyPoster(http).post(post_job(1), {**BSKY, "service_url": url})
            x, _ = await XPoster(http, api_url=url).post(post_job(1), {"access_token": "x-alice"})
        pool = SmtpPool(SmtpAccount(name, listener.port, starttls=True, timeout=3, egress=policy))
        with pytest.raises(EgressRefused):
            await pool.send("alice@perso.example", "bob@exemple.fr", b"Subject: x\r\n\r\nx")
    assert {(o.verdict, o.reason) for o in (mastodon, bluesky, x)} == {(Verdict.failed, REASON)}
    assert listener.accepted == 0


# -- the same adapters, the listener allow-listed: they work, so the tests above could see them --------


async def test_allow_listed_the_same_adapters_reach_the_listener(fake, smtp_server: SmtpServer):
    async with Listener(upstream=int(fake.url.rsplit(":", 1)[1])) as social, \
            Listener(upstream=smtp_server.port) as mail:
        policy = EgressPolicy(f"127.0.0.1:{social.port},127.0.0.1:{mail.port}")
        url = f"http://127.0.0.1:{social.port}"
        async with PinnedClient(policy, timeout=5) as http:
            posted = [(await MastodonPoster(http).post(post_job(1), {"instance_url": url, "access_token": "tok-alice"}))[0],
                      (await BlueskyPoster(http).post(post_job(1), {**BSKY, "service_url": url}))[0],
                      (await XPoster(http, api_url=url).post(post_job(1), {"access_token": "x-alice"}))[0]]
        pool = SmtpPool(SmtpAccount("127.0.0.1", mail.port, timeout=5, egress=policy))
        await pool.send("alice@perso.example", "bob@exemple.fr", b"Subject: allowed\r\n\r\nhello\r\n")
        await pool.close()
    assert [o.verdict for o in posted] == [Verdict.posted] * 3
    assert (len(fake.statuses), len(fake.records), len(fake.tweets)) == (1, 1, 1)
    assert social.accepted >= 1 and mail.accepted == 1
    assert smtp_server.recorder.wait_for(1)[0]["Subject"] == "allowed"


# -- contacts refuses the same addresses at input, naming the field -------------------------------------


@pytest.fixture(scope="module")
def contacts(tmp_path_factory) -> Iterator[TestClient]:
    # one app for the module: each case below is one request, not one app start
    var = tmp_path_factory.mktemp("egress")
    server = start_nats(var / "js")
    settings = contacts_settings(server.url, f"sqlite:///{var}/contacts.db")
    settings = settings.model_copy(update={"common": CommonSettings(nats_url=server.url,
                                                                    egress_allow="127.0.0.1:2525")})
    try:
        with TestClient(create_contacts_app(settings)) as client:
            yield client
    finally:
        server.process.terminate()
        server.process.wait(10)


SMTP = {"host": "smtp.perso.example", "port": 587, "security": "starttls", "username": "alice.login",
        "password": "smtp-secret-pass-99", "from_address": "alice@perso.example"}


INWARD_INPUT = [
    *[("mastodon", {"instance_url": url, "access_token": "mastodon-secret-token-4242"}, "instance_url")
      for url in inward(4222)],
    ("mastodon", {"instance_url": "https://169.254.169.254", "access_token": "t" * 10}, "instance_url"),
    ("mastodon", {"instance_url": "https://mastodon.example/api/v1/admin?x=", "access_token": "t" * 10},
     "instance_url"),
    ("mastodon", {"instance_url": "http://mastodon.example", "access_token": "t" * 10}, "instance_url"),
    *[("bluesky", {**BSKY, "service_url": url}, "service_url") for url in inward(5432)],
    ("bluesky", {**BSKY, "service_url": "https://[fd00:ec2::254]"}, "service_url"),
    ("email", {**SMTP, "host": "127.0.0.1", "port": 4222}, "host"),
    ("email", {**SMTP, "host": "localhost", "port": 5432}, "host"),
    ("email", {**SMTP, "host": "10.0.0.5"}, "host"),
    ("email", {**SMTP, "host": "::ffff:127.0.0.1"}, "host"),
    ("email", {**SMTP, "host": "169.254.169.254"}, "host"),
    ("email", {**SMTP, "host": "2130706433"}, "host"),
    ("email", {**SMTP, "host": "0x7f000001"}, "host"),
    ("email", {**SMTP, "host": "127.0.0.1", "port": 4222, "security": "none"}, "security"),
    ("email", {**SMTP, "display_name": "Alice\r\nBcc: everyone@exemple.fr"}, "display_name"),
    ("email", {**SMTP, "host": "127.0.0.1", "port": 2526, "security": "none"}, "security"),  # 2525 is allowed, not 2526
]


def test_contacts_refuses_an_inward_address_at_input_naming_the_field(contacts):
    _, alice = new_volunteer(contacts, "Alice Martin", "alice@benevoles.example")
    wrong = []
    for network, body, field in INWARD_INPUT:
        r = contacts.put(f"/me/networks/{network}", headers=alice, json=body)
        if r.status_code != 422 or ("body", field) not in loc_of(r) or "secret" in r.text:
            wrong.append((network, body, r.status_code, r.text))
    assert wrong == []
    assert not any(n["connected"] for n in contacts.get("/me/networks", headers=alice).json())


def test_contacts_keeps_the_origin_only_and_takes_an_allow_listed_local_server(contacts):
    vid, alice = new_volunteer(contacts, "Alice Other", "alice.other@benevoles.example")
    r = contacts.put("/me/networks/mastodon", headers=alice,
                     json={"instance_url": "https://Mastodon.Example./", "access_token": "t" * 10})
    assert r.status_code == 200, r.text
    r = contacts.put("/me/networks/email", headers=alice, json={**SMTP, "host": "127.0.0.1", "port": 2525,
                                                                "security": "none"})
    assert r.status_code == 200 and r.json()["host"] == "127.0.0.1", r.text
    with Session(contacts.app.state.engine) as session:
        book = open_book(session, contacts.app.state.keys.master, contacts.app.state.keys.index,
                         session.exec(select(Volunteer).where(Volunteer.id == vid)).one())
        assert connected_credentials(session, book)[Channel.mastodon]["instance_url"] == "https://mastodon.example"


# -- the dispatchers over a real nats-server: a job aimed inward is a permanent, typed failure ---------


async def test_a_post_job_aimed_inward_fails_as_egress_refused_and_reaches_nothing(nats_server, fake):
    from tests.support.social import results as post_results
    from tests.support.social import running, sealed_post_job

    async with Listener() as listener:
        targets = [f"http://127.0.0.1:{listener.port}/internal/x?y=", f"https://127.0.0.1:{nats_server.port}",
                   f"https://localhost:{PG_PORT}"]
        async with running("mastodon", nats_server.url, fake) as contacts:
            jobs = [sealed_post_job(n, {"instance_url": url, "access_token": "tok-alice"}, "mastodon")
                    for n, url in enumerate(targets, 1)]
            jobs.append(sealed_post_job(9, {"instance_url": fake.url, "access_token": "tok-alice"}, "mastodon"))
            for j in jobs:
                await contacts.publish(MASTODON_JOB, j, msg_id=j.job_id)
            got = {r.job_id: (r.status, r.reason) for r in await post_results(nats_server.url, "mastodon", 4)}
    assert got == {"job-1": (DeliveryStatus.failed, REASON), "job-2": (DeliveryStatus.failed, REASON),
                   "job-3": (DeliveryStatus.failed, REASON), "job-9": (DeliveryStatus.delivered, None)}
    assert listener.accepted == 0 and len(fake.statuses) == 1  # the allow-listed fake shows the path works


async def test_an_email_job_through_an_inward_own_server_fails_as_egress_refused(nats_server, smtp_server):
    from tests.support.dispatch_email import consumer_settled, dispatcher
    from tests.support.dispatch_email import job as email_job
    from tests.support.dispatch_email import results as email_results

    async with Listener() as listener:
        inward_servers = [("127.0.0.1", listener.port, "starttls"), ("127.0.0.1", nats_server.port, "tls"),
                          ("localhost", PG_PORT, "none"), ("::ffff:127.0.0.1", listener.port, "starttls")]
        jobs = [email_job(n, smtp_account={"host": host, "port": port, "security": security, "username": "alice",
                                           "password": "mdp-alice", "from_address": "alice.martin@perso.example"})
                for n, (host, port, security) in enumerate(inward_servers, 1)]
        CONNECTS.clear()
        async with dispatcher(nats_server.url, smtp_server) as (contacts, _):
            for j in (*jobs, email_job(9)):
                await contacts.publish(EMAIL_JOB, j, msg_id=j.job_id)
            got = {r.job_id: (r.status, r.reason) for r, _ in await email_results(nats_server.url, 5)}
            await consumer_settled(nats_server.url)  # nothing left to retry: the refusals are final
    assert got == {**{f"job-{n}": (DeliveryStatus.failed, REASON) for n in range(1, 5)},
                   "job-9": (DeliveryStatus.delivered, None)}
    assert listener.accepted == 0 and connected_to(listener.port) == [] and connected_to(PG_PORT) == []
    assert [m["To"] for m in smtp_server.recorder.messages] == ["Camille Dupont9 <camille9@exemple.fr>"]
