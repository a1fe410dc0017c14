"""A pool of persistent aiosmtplib connections to the campaign's relay.

Each connection sends one message at a time (SMTP is sequential per
connection); the pool's size is the dispatcher's sending concurrency.
A connection that drops is replaced on its next use; the error reaches the
caller, whose job is retried.

A volunteer's own server is reached through the egress policy
(``shared.egress``), at every (re)connection: its name resolved once and
checked, the socket connected to that checked address, TLS verifying the
name; a refused address raises ``EgressRefused`` before any byte is sent.
The campaign's relay is the operator's setting and is connected as named."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage

import aiosmtplib

from services.dispatch.email.settings import EmailDispatchSettings
from shared.egress import EgressPolicy, connect_socket


@dataclass(frozen=True)
class SmtpAccount:
    """Where and how to connect: the campaign's relay, or a volunteer's own server."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    tls: bool = False
    timeout: float = 30.0
    egress: EgressPolicy | None = field(default=None, compare=False)  # set for a volunteer's own server

    @property
    def security(self) -> str:
        return "tls" if self.tls else "starttls" if self.starttls else "none"

    @classmethod
    def campaign_relay(cls, s: EmailDispatchSettings) -> "SmtpAccount":
        return cls(s.smtp_host, s.smtp_port, s.smtp_username,
                   s.smtp_password.get_secret_value() if s.smtp_password else None,
                   s.smtp_starttls, s.smtp_tls, s.smtp_timeout)


class SmtpPool:
    def __init__(self, settings: EmailDispatchSettings | SmtpAccount, size: int | None = None) -> None:
        if isinstance(settings, SmtpAccount):
            self.account, self.size = settings, size or 1
        else:
            self.account, self.size = SmtpAccount.campaign_relay(settings), size or settings.smtp_pool_size
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP | None] | None = None
        self._clients: set[aiosmtplib.SMTP] = set()

    def _queue(self) -> asyncio.LifoQueue:
        # Made lazily: the queue belongs to the loop that first sends.
        if self._idle is None:
            self._idle = asyncio.LifoQueue()
            for _ in range(self.size):
                self._idle.put_nowait(None)  # a slot, connected on first use
        return self._idle

    async def _connect(self) -> aiosmtplib.SMTP:
        a = self.account
        if a.egress is None:
            client = aiosmtplib.SMTP(hostname=a.host, port=a.port, use_tls=a.tls, start_tls=a.starttls,
                                     username=a.username, password=a.password, timeout=a.timeout)
            await client.connect()
            return client
        host = a.egress.check_smtp(a.host, a.port, a.security)
        sock = await connect_socket(a.egress, host, a.port, a.timeout)
        # hostname is the name, not the address: TLS (implicit or STARTTLS) verifies the certificate for it
        client = aiosmtplib.SMTP(hostname=host, sock=sock, use_tls=a.tls, start_tls=a.starttls,
                                 username=a.username, password=a.password, timeout=a.timeout)
        try:
            await client.connect()
        except BaseException:
            client.close()
            sock.close()
            raise
        return client

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosmtplib.SMTP]:
        """A connected client, for one message; returned to the pool after,
        or dropped if the exchange broke it."""
        queue = self._queue()
        client = await queue.get()
        try:
            if client is None or not client.is_connected:
                self._clients.discard(client)
                client = None  # if connecting fails, the slot goes back empty
                client = await self._connect()
                self._clients.add(client)
            yield client
        except BaseException:
            if client is not None and not client.is_connected:
                self._clients.discard(client)
                client = None
            raise
        finally:
            queue.put_nowait(client)

    async def send(self, sender: str, recipient: str, data: bytes,
                   accepted: Callable[[], Awaitable[None]] | None = None) -> None:
        """One envelope on one pooled connection; raises aiosmtplib errors.
        A refused recipient leaves the connection usable (RSET is sent).

        ``accepted`` runs after the server's 250, before the connection goes
        back to the pool: the jobs between a 250 and their ledger row are
        thus never more than the pool's size (the duplicate bound)."""
        async with self.connection() as client:
            try:
                await client.sendmail(sender, [recipient], data)
                if accepted is not None:
                    await accepted()
            except aiosmtplib.SMTPServerDisconnected:
                client.close()
                raise
            except aiosmtplib.SMTPResponseException as exc:
                if exc.code == 421:  # the server is closing this connection
                    client.close()
                raise

    async def send_message(self, message: EmailMessage) -> None:
        async with self.connection() as client:
            await client.send_message(message)

    async def close(self) -> None:
        for client in list(self._clients):
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
        self._clients.clear()
        self._idle = None

    async def ready(self) -> tuple[bool, str]:
        connected = sum(1 for c in self._clients if c.is_connected)
        return True, f"{connected}/{self.size} connected" if connected else "idle"
