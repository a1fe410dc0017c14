"""Fixtures for every test: real servers (tests/support/servers.py), the
services in process, and the markers `make test-fast` selects on."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from aiosmtpd.controller import Controller

import tools.stack
from shared.messaging import inbox_prefix
from tests.support.nats_auth import Client, Secured, secured_config, server_env
from tests.support.servers import (
    NatsServer,
    SmtpRecorder,
    SmtpServer,
    apply_streams_now,
    create_pg_database,
    drop_pg_database,
    start_nats,
)
from tools.stack import free_port, nats_server_binary, wait_for_port
from tools.streams import STREAMS_USER

# -- markers -------------------------------------------------------------------------

# Derived from what a test uses, so a new test is marked without anyone
# remembering to: `make test-fast` must never start a server by surprise.
NATS_FIXTURES = {"nats_server", "nats_url", "secured"}
POSTGRES_FIXTURES = {"pg_url"}
BROWSER_FIXTURES = {"chromium"}


def derived_markers(item: pytest.Item) -> set[str]:
    names = set(getattr(item, "fixturenames", ()))
    found = set()
    if names & NATS_FIXTURES:
        found.add("nats")
    if names & POSTGRES_FIXTURES:
        found.add("postgres")
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "postgresql" in callspec.params.values():  # db_url, or a stack's database
        found.add("postgres")
    if names & BROWSER_FIXTURES:
        found.add("browser")
    # A module that starts the whole system (tools.stack) runs every service
    # as a process: seconds per test, and NATS with it.
    if getattr(getattr(item, "module", None), "Stack", None) is tools.stack.Stack:
        found |= {"slow", "nats"}
    return found


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        have = {mark.name for mark in item.iter_markers()}
        for name in sorted(derived_markers(item) - have):
            item.add_marker(name)


# -- servers --------------------------------------------------------------------------


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = start_nats(tmp_path / "jetstream")
    yield server
    server.process.terminate()
    server.process.wait(10)


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    recorder = SmtpRecorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    yield SmtpServer("127.0.0.1", port, recorder)
    controller.stop()


@pytest.fixture
def pg_url() -> Iterator[str]:
    name, url = create_pg_database()
    yield url
    drop_pg_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path: Path) -> Iterator[str]:
    """Each storage test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
    else:
        name, url = create_pg_database()
        yield url
        drop_pg_database(name)


# -- a nats-server with the deployment's users and permissions ---------------------------


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


# -- the social networks ------------------------------------------------------------


@pytest.fixture
def fake():
    """A fake Mastodon, Bluesky and X on a local port, knowing Alice's
    credentials (tests.support.social.BSKY, MASTODON, "x-alice")."""
    from tests.support.fake_social import FakeSocial, Served
    from tests.support.social import BSKY

    with Served(FakeSocial(mastodon_tokens={"tok-alice"}, bsky_passwords={BSKY["handle"]: BSKY["app_password"]},
                           x_tokens={"x-alice"})) as server:
        yield server


# -- the services in process, their lifespan running ----------------------------------
# Imported when used: a pure test must not pay for (or be broken by) loading
# every service.


def _running(service: str, nats_url: str, db_url: str = "sqlite://"):
    from fastapi.testclient import TestClient

    from tests.support.apps import build_apps

    app = build_apps(nats_url, db_url)[service]
    with TestClient(app) as client:
        assert client.app is app
        yield client


@pytest.fixture
def feed(nats_url: str, db_url: str):
    yield from _running("feed", nats_url, db_url)


@pytest.fixture
def contacts(nats_url: str, db_url: str):
    yield from _running("contacts", nats_url, db_url)


@pytest.fixture
def matcher(nats_url: str):
    yield from _running("matcher", nats_url)


@pytest.fixture
def dispatch(nats_url: str):
    yield from _running("dispatch-email", nats_url)
