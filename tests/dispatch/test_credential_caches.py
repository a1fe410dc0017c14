"""Issue 11, finding 4, beyond Bluesky: whatever a dispatcher keeps open
between jobs (a Bluesky session, an authenticated SMTP connection) serves
only the credential that opened it. A second volunteer naming the same
account with a made-up password must not ride on the first one's login.
(Mastodon and X keep nothing per account: each post carries its own token;
the Bluesky attack is in tests/dispatch/test_social_adapters.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from pydantic import SecretStr

from services.dispatch.email.own_smtp import OwnAccounts
from shared.egress import EgressPolicy
from shared.smtp_identity import SmtpIdentity
from tests.support.servers import SmtpRecorder
from tools.stack import free_port

MAIL = b"Subject: une reunion\r\n\r\nRendez-vous jeudi.\r\n"


class Logins:
    def __init__(self) -> None:
        self.tried: list[tuple[str, bool]] = []

    def __call__(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"alice", b"right-pass")
        self.tried.append((auth_data.login.decode(), ok))
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@pytest.fixture
def server() -> Iterator[tuple[int, SmtpRecorder, Logins]]:
    recorder, logins, port = SmtpRecorder(), Logins(), free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port, authenticator=logins,
                            auth_required=True, auth_require_tls=False)
    controller.start()
    yield port, recorder, logins
    controller.stop()


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")  # a test server, on loopback
async def test_a_pooled_smtp_login_serves_only_the_password_that_opened_it(server):
    port, recorder, logins = server
    accounts = OwnAccounts(5, EgressPolicy(f"127.0.0.1:{port}"))  # loopback, reached through the allow-list
    alice = SmtpIdentity(host="127.0.0.1", port=port, security="none", username="alice", password="right-pass",
                         from_address="alice@perso.example")
    try:
        await (await accounts.pool(alice)).send("alice@perso.example", "ami@exemple.fr", MAIL)
        bob = alice.model_copy(update={"password": SecretStr("made-up-pass")})  # same server, same login name
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await (await accounts.pool(bob)).send("alice@perso.example", "victime@exemple.fr", MAIL)
        await (await accounts.pool(alice)).send("alice@perso.example", "ami2@exemple.fr", MAIL)
    finally:
        await accounts.close()
    # Bob's attempt opened its own connection and was refused; Alice's connection was reused for her second mail
    # (aiosmtplib tries each mechanism the server offers: Bob's may be refused more than once)
    assert logins.tried[0] == ("alice", True) and len(logins.tried) >= 2
    assert not any(ok for _, ok in logins.tried[1:])
    assert [to for _, (to,) in recorder.envelopes] == ["ami@exemple.fr", "ami2@exemple.fr"]
