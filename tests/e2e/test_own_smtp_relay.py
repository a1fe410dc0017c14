"""A volunteer's own SMTP account, end to end: every service a separate
process as `make run` starts them. Alice connects her email identity (a
second real SMTP server, with AUTH); her relay's email arrives there,
From: her, authenticated with her login, and never in the campaign's relay.
Bob connected none: his goes through the campaign's relay as before.
Her password reaches no log. Bob cannot name the stack's own ports as his
server (the egress policy): Alice's reaches her server only because the
allow-list names it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.support.servers import SmtpRecorder, SmtpServer
from tests.support.volunteer_accounts import volunteer_with_a_friend
from tests.support.waiting import poll
from tools.stack import Ports, Stack, StackConfig, free_port

LOGIN, PASSWORD = "alice.login", "own-smtp-secret-4242"


class Logins:
    """Accepts Alice's login only, and remembers who authenticated."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            LOGIN.encode(), PASSWORD.encode())
        if ok:
            self.seen.append(auth_data.login.decode())
        return AuthResult(success=ok)


@pytest.fixture
def own_server() -> Iterator[tuple[SmtpServer, Logins]]:
    # Plain text on localhost, which own_smtp allows ("none" is for this
    # machine only); AUTH required, so a relay that skipped the login fails.
    recorder, logins, port = SmtpRecorder(), Logins(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, authenticator=logins,
                            auth_required=True, auth_require_tls=False)
    controller.start()
    yield SmtpServer("127.0.0.1", port, recorder), logins
    controller.stop()


@pytest.fixture
def stack(tmp_path: Path, smtp_server, own_server):
    # Alice's server is on loopback: contacts and dispatch-email reach it only
    # because the allow-list names it, as a local run names its sink (shared.egress)
    own, _ = own_server
    cfg = StackConfig(var=tmp_path / "var", ports=Ports.free(), start_sink=False, smtp_host=smtp_server.host,
                      log_format="json", egress_allow=f"{own.host}:{own.port}")
    cfg.ports.smtp = smtp_server.port
    with Stack(cfg) as running:
        yield running


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # on purpose: localhost
def test_a_relay_goes_through_the_volunteers_own_smtp_account(stack, smtp_server, own_server):
    own, logins = own_server
    cfg = stack.cfg
    contacts, staff = cfg.url("contacts"), {"Authorization": f"Bearer {cfg.staff_token}"}
    with httpx.Client(timeout=10) as http:
        alice = volunteer_with_a_friend(http, cfg, "Alice Martin", "alice@benevoles.example")
        bob = volunteer_with_a_friend(http, cfg, "Bob Nguyen", "bob@benevoles.example")
        # the stack's own ports are not Bob's to name (issue 11, finding 5): only Alice's allow-listed server is
        for port in (cfg.ports.nats, cfg.ports.contacts, cfg.ports.smtp):
            r = http.put(f"{contacts}/me/networks/email", headers=bob, json={
                "host": "127.0.0.1", "port": port, "security": "starttls", "username": "bob", "password": "x" * 8,
                "from_address": "bob@perso.example"})
            assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "host"], r.text
        r = http.put(f"{contacts}/me/networks/mastodon", headers=bob, json={
            "instance_url": f"http://127.0.0.1:{cfg.ports.feed}/messages?x=", "access_token": "t" * 10})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "instance_url"], r.text
        r = http.put(f"{contacts}/me/networks/email", headers=alice, json={
            "host": own.host, "port": own.port, "security": "none", "username": LOGIN, "password": PASSWORD,
            "from_address": "alice@perso.example", "display_name": "Alice M."})
        assert r.status_code == 200 and r.json()["connected"], r.text

        r = http.post(f"{cfg.url('feed')}/messages", headers=staff, json={
            "title": "Nos écoles méritent mieux", "body": "Réunion publique le 12 décembre.",
            "interests": ["education"],
            "variants": {"email": {"subject": "Réunion sur nos écoles", "body": "Rendez-vous le 12 décembre."}}})
        assert r.status_code == 201, r.text

        def relay(auth) -> dict:
            sid = poll(lambda: http.get(f"{contacts}/inbox", headers=auth).json(),
                       lambda items: items and items[0]["title"], what="the suggestion")[0]["suggestion_id"]
            r = http.post(f"{contacts}/inbox/{sid}/relay", headers=auth)
            assert r.status_code == 200, r.text
            return r.json()

        done = relay(alice)
        assert done["channels"]["email"]["queued"] == 1
        # an email identity is not a network to post on: share links only, besides the email
        assert all(c["status"] == "link" for n, c in done["channels"].items() if n != "email"), done
        (mail,) = own.recorder.wait_for(1)
        (sender,) = mail["From"].addresses
        assert (sender.display_name, sender.addr_spec) == ("Alice M.", "alice@perso.example")
        assert mail["To"].addresses[0].addr_spec == "ami.alice@exemple.fr"
        assert mail["Reply-To"].addresses[0].addr_spec == "alice@perso.example"
        assert own.recorder.envelopes == [("alice@perso.example", ["ami.alice@exemple.fr"])]
        assert logins.seen == [LOGIN]
        poll(lambda: http.get(f"{contacts}/relays/{done['relay_id']}", headers=alice).json()["channels"]["email"],
             lambda email: email["delivered"] == 1, what="Alice's email delivered")

        relay(bob)  # no identity: the campaign's relay, as before
        (campaign_mail,) = smtp_server.recorder.wait_for(1)
        assert campaign_mail["To"].addresses[0].addr_spec == "ami.bob@exemple.fr"
        assert len(own.recorder.messages) == 1  # Alice's one email went through her server only

    logs = "\n".join(p.read_text() for p in (cfg.var / "log").glob("*.log"))
    assert PASSWORD not in logs, "the password reached a log"
