"""A pool of persistent aiosmtplib connections to the campaign's relay.

Each connection sends one message at a time (SMTP is sequential per
connection); the pool's size is the dispatcher's sending concurrency.
A connection that drops is replaced on its next use; the error reaches the
caller, whose job is retried."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from email.message import EmailMessage

import aiosmtplib

from services.dispatch.settings import EmailDispatchSettings


class SmtpPool:
    def __init__(self, settings: EmailDispatchSettings, size: int | None = None) -> None:
        self.settings = settings
        self.size = size or settings.smtp_pool_size
        self._idle: asyncio.LifoQueue[aiosmtplib.SMTP | None] | None = None
        self._clients: set[aiosmtplib.SMTP] = set()

    def _queue(self) -> asyncio.LifoQueue:
        # Made lazily: the queue belongs to the loop that first sends.
        if self._idle is None:
            self._idle = asyncio.LifoQueue()
            for _ in range(self.size):
                self._idle.put_nowait(None)  # a slot, connected on first use
        return self._idle

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_host,
            port=s.smtp_port,
            use_tls=s.smtp_tls,
            start_tls=s.smtp_starttls,
            username=s.smtp_username,
            password=s.smtp_password.get_secret_value() if s.smtp_password else None,
            timeout=s.smtp_timeout,
        )

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosmtplib.SMTP]:
        """A connected client, for one message; returned to the pool after,
        or dropped if the exchange broke it."""
        queue = self._queue()
        client = await queue.get()
        try:
            if client is None or not client.is_connected:
                self._clients.discard(client)
                client = self._new_client()
                await client.connect()
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
