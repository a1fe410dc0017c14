"""A nats-server running the deployment's generated accounts and users
(deploy/nats/auth.conf), each user with a fresh random password, its
streams applied by the user ``streams`` as the deployment's Job does; and
clients connected as any of those users, which record what the server
refused them."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest

from shared.messaging import inbox_prefix
from shared.catalogue import SERVICES
from tests.conftest import apply_streams_now
from tools.nats_permissions import DEFAULT_PATH, OPS_USER, password_variable
from tools.stack import free_port, nats_server_binary, wait_for_port
from tools.streams import STREAMS_USER

ROOT = Path(__file__).resolve().parent.parent
USERS = (*SERVICES, STREAMS_USER, OPS_USER)
REFUSED = 1.0  # seconds a refused request waits for the reply that never comes


def secured_config(folder: Path, port: int) -> tuple[Path, dict[str, str]]:
    """A server config including the committed auth.conf, and each user's
    password. nats-server resolves an include relative to the including
    file, so auth.conf is copied beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / DEFAULT_PATH, folder / "auth.conf")
    conf = folder / "server.conf"
    conf.write_text(
        f'host: "127.0.0.1"\nport: {port}\nserver_name: "maillage-test"\n'
        f'jetstream {{ store_dir: "{folder / "jetstream"}" }}\ninclude "auth.conf"\n'
    )
    return conf, {user: make_password() for user in USERS}


def make_password() -> str:
    """nats-server parses an environment variable's value as a config token:
    a password must read as a string (a leading letter, no punctuation)."""
    return "p" + secrets.token_hex(20)


def server_env(passwords: dict[str, str]) -> dict[str, str]:
    """What the server's environment holds (in Kubernetes, from a Secret)."""
    return {password_variable(user): pw for user, pw in passwords.items()}


@dataclass
class Secured:
    url: str
    passwords: dict[str, str]


@pytest.fixture
def secured(tmp_path) -> Iterator[Secured]:
    port = free_port()
    conf, passwords = secured_config(tmp_path / "nats", port)
    proc = subprocess.Popen([nats_server_binary(), "-c", str(conf)], env=server_env(passwords),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, 10)
    url = f"nats://127.0.0.1:{port}"
    apply_streams_now(url, user=STREAMS_USER, password=passwords[STREAMS_USER])  # the ops step, as in production
    yield Secured(url, passwords)
    proc.terminate()
    proc.wait(10)


@dataclass
class Client:
    nc: nats.NATS
    errors: list[str] = field(default_factory=list)

    def violations(self) -> list[str]:
        return [e for e in self.errors if "permissions violation" in e.lower()]

    async def refused(self, what: str) -> bool:
        """The server reported a permissions violation naming ``what``."""
        for _ in range(40):
            if any(what.lower() in e.lower() for e in self.violations()):
                return True
            await asyncio.sleep(0.05)
        return False


@pytest.fixture
async def connect(secured: Secured) -> AsyncIterator:
    clients: list[Client] = []

    async def as_user(user: str, password: str | None = None) -> Client:
        client = Client(None)  # type: ignore[arg-type]

        async def on_error(exc: Exception) -> None:
            client.errors.append(str(exc))

        client.nc = await nats.connect(secured.url, user=user, password=password or secured.passwords[user],
                                       inbox_prefix=inbox_prefix(user), error_cb=on_error,
                                       allow_reconnect=False)
        clients.append(client)
        return client

    yield as_user
    for client in clients:
        await client.nc.close()
