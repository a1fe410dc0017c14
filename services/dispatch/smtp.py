"""A persistent aiosmtplib connection that reconnects when it drops."""

from __future__ import annotations

import asyncio
from email.message import EmailMessage

import aiosmtplib

from services.dispatch.settings import EmailDispatchSettings


class SmtpSender:
    def __init__(self, settings: EmailDispatchSettings) -> None:
        self.settings = settings
        self._client: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()

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

    async def send(self, message: EmailMessage) -> None:
        """Send on the shared connection; raises aiosmtplib errors as they come."""
        async with self._lock:
            if self._client is None or not self._client.is_connected:
                self._client = self._new_client()
                await self._client.connect()
            try:
                await self._client.send_message(message)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError, OSError):
                self._client = None
                raise

    async def close(self) -> None:
        if self._client is not None and self._client.is_connected:
            try:
                await self._client.quit()
            except aiosmtplib.SMTPException:
                self._client.close()
        self._client = None

    async def ready(self) -> tuple[bool, str]:
        return True, "connected" if self._client and self._client.is_connected else "idle"
