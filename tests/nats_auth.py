"""A nats-server running the deployment's generated accounts and users
(deploy/nats/auth.conf), each user with a fresh random password."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

from shared.catalogue import SERVICES
from tools.nats_permissions import DEFAULT_PATH, OPS_USER, password_variable
from tools.streams import STREAMS_USER

ROOT = Path(__file__).resolve().parent.parent
USERS = (*SERVICES, STREAMS_USER, OPS_USER)


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
