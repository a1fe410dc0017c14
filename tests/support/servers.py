"""The real parts the tests run against: a nats-server with JetStream on a
free port (never the machine's 4222), an aiosmtpd server that keeps what it
receives, and throw-away PostgreSQL databases (PostgreSQL must be reachable:
a missing server fails the suite, it is not skipped). The fixtures that
start them are in tests/conftest.py."""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tools.stack import free_port, nats_server_binary, wait_for_port
from tools.streams import Applied, Outcome, apply

PG_ADMIN_URL = os.environ.get("MAILLAGE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


# -- NATS ----------------------------------------------------------------------------


@dataclass
class NatsServer:
    url: str
    port: int
    process: subprocess.Popen


def start_nats(store: Path, port: int | None = None, *, streams: bool = True) -> NatsServer:
    """A nats-server with the catalogue's streams applied, as a deployment
    has them before any service starts (services never declare a stream)."""
    port = port or free_port()
    proc = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, 10)
    server = NatsServer(f"nats://127.0.0.1:{port}", port, proc)
    if streams:
        apply_streams_now(server.url)
    return server


def apply_streams_now(url: str, **kwargs) -> list[Applied]:
    """``tools.streams.apply`` from sync code, whether or not an event loop
    runs in this thread (fixtures are called from both)."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(asyncio.run(apply(url, **kwargs)))
        except BaseException as exc:  # re-raised in the caller's thread
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if not outcome:
        raise RuntimeError(f"applying the streams on {url} hung")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    refused = [r for r in outcome[0] if r.outcome is Outcome.REFUSED]
    assert not refused, refused
    return outcome[0]


# -- SMTP ----------------------------------------------------------------------------


@dataclass
class SmtpRecorder:
    """An aiosmtpd handler that keeps every message, and can refuse some."""

    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[tuple[str, list[str]]] = field(default_factory=list)
    sessions: set[int] = field(default_factory=set)
    refuse: dict[str, str] = field(default_factory=dict)  # recipient -> SMTP reply
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.arrived:
            self.sessions.add(id(session))
            self.messages.append(msg)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.arrived.notify_all()
        return "250 Message accepted"

    def wait_for(self, count: int, timeout: float = 20.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} emails, got {len(self.messages)}")
                self.arrived.wait(left)
            return list(self.messages)

    async def await_count(self, count: int, timeout: float = 20.0) -> list[EmailMessage]:
        return await asyncio.to_thread(self.wait_for, count, timeout)


@dataclass
class SmtpServer:
    host: str
    port: int
    recorder: SmtpRecorder


# -- databases -----------------------------------------------------------------------


def create_pg_database() -> tuple[str, str]:
    name = f"maillage_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is required at {PG_ADMIN_URL}: {exc}", pytrace=False)
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return name, f"{base}/{name}"


def drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class RawRecorder(SmtpRecorder):
    """Keeps the bytes as received too: headers and signatures are judged
    on the wire, not on what the parser made of them."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        self.raw.append(envelope.original_content)
        return await super().handle_DATA(server, session, envelope)
