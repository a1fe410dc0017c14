"""A nats-server running the deployment's generated accounts and users
(deploy/nats/auth.conf), each user with a fresh random password, its
streams applied by the user ``streams`` as the deployment's Job does; and
clients connected as any of those users, which record what the server
refused them."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nats

from shared.catalogue import SERVICES
from tests.support.paths import ROOT
from tools.nats_permissions import DEFAULT_PATH, OPS_USER, password_variable
from tools.streams import STREAMS_USER

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
