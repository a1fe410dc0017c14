"""The sent ledger: which jobs the SMTP server already accepted.

Checked before each send and written right after the server's 250, so a
redelivered job (the process died before its ack) is not sent twice. The
only window left is a crash between the 250 and the ledger write (or
during DATA, before the client read the 250): at most one duplicate per job
in flight at that instant, i.e. at most ``smtp_pool_size`` per crash.

It also keeps the send times per volunteer, which the rate limiter reads
back on start (a limit that a restart resets is no limit), the recipient's
keyed hash, which a bounce arriving days later is traced back to, and the
count of transient failures per job (the retry budget; rate-limit deferrals
do not spend it).

SQLite (one replica, local file) is used from the event loop directly:
a WAL insert is tens of microseconds, cheaper than a thread hop. PostgreSQL
(shared by every replica, so a job redelivered to another replica is seen
as sent) goes through psycopg's asyncio connection: no thread either.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import psycopg

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS dispatch_email_sent (
        job_id TEXT PRIMARY KEY, volunteer_id TEXT NOT NULL,
        recipient_hash TEXT NOT NULL, sent_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS dispatch_email_sent_vol ON dispatch_email_sent (volunteer_id, sent_at)",
    "CREATE INDEX IF NOT EXISTS dispatch_email_sent_at ON dispatch_email_sent (sent_at)",
    """CREATE TABLE IF NOT EXISTS dispatch_email_failures (
        job_id TEXT PRIMARY KEY, failures INTEGER NOT NULL, updated_at DOUBLE PRECISION NOT NULL)""",
)


class Ledger:
    """Common queries; subclasses run them on their database."""

    placeholder = "?"

    async def _execute(self, sql: str, params: tuple = ()) -> None:
        raise NotImplementedError

    async def _fetchone(self, sql: str, params: tuple = ()) -> tuple[Any, ...] | None:
        raise NotImplementedError

    async def open(self) -> None:
        for statement in SCHEMA:
            await self._execute(statement)

    async def close(self) -> None:  # pragma: no cover - overridden
        pass

    def _q(self, sql: str) -> str:
        return sql.replace("?", self.placeholder)

    async def was_sent(self, job_id: str) -> bool:
        row = await self._fetchone(self._q("SELECT 1 FROM dispatch_email_sent WHERE job_id = ?"), (job_id,))
        return row is not None

    async def record_sent(self, job_id: str, volunteer_id: str, recipient_hash: str, at: float | None = None) -> None:
        await self._execute(
            self._q("INSERT INTO dispatch_email_sent (job_id, volunteer_id, recipient_hash, sent_at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (job_id) DO NOTHING"),
            (job_id, volunteer_id, recipient_hash, at if at is not None else time.time()),
        )

    async def recipient_of(self, job_id: str) -> str | None:
        row = await self._fetchone(
            self._q("SELECT recipient_hash FROM dispatch_email_sent WHERE job_id = ?"), (job_id,))
        return row[0] if row else None

    async def sent_since(self, volunteer_id: str, since: float) -> int:
        row = await self._fetchone(
            self._q("SELECT count(*) FROM dispatch_email_sent WHERE volunteer_id = ? AND sent_at >= ?"),
            (volunteer_id, since))
        return int(row[0]) if row else 0

    async def add_failure(self, job_id: str) -> int:
        """Count one transient failure of a job; returns the new count."""
        now = time.time()
        await self._execute(
            self._q("INSERT INTO dispatch_email_failures (job_id, failures, updated_at) VALUES (?, 1, ?) "
                    "ON CONFLICT (job_id) DO UPDATE SET failures = dispatch_email_failures.failures + 1, "
                    "updated_at = excluded.updated_at"),
            (job_id, now))
        row = await self._fetchone(
            self._q("SELECT failures FROM dispatch_email_failures WHERE job_id = ?"), (job_id,))
        return int(row[0]) if row else 1

    async def prune(self, older_than_days: float) -> None:
        cutoff = time.time() - older_than_days * 86400
        await self._execute(self._q("DELETE FROM dispatch_email_sent WHERE sent_at < ?"), (cutoff,))
        await self._execute(self._q("DELETE FROM dispatch_email_failures WHERE updated_at < ?"), (cutoff,))

    async def ready(self) -> tuple[bool, str]:
        await self._fetchone("SELECT 1")
        return True, type(self).__name__


class SqliteLedger(Ledger):
    def __init__(self, path: str) -> None:
        self.path = path
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # autocommit; WAL + synchronous=NORMAL: a commit survives the process
        # being killed (it is in the OS's cache); only a power cut can lose
        # the last ones, each at worst one duplicate email.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        await super().open()

    # Opened by prepare(), before the first job; not checked again per query (the hot path).
    async def _execute(self, sql: str, params: tuple = ()) -> None:
        self._db.execute(sql, params)  # type: ignore[union-attr]

    async def _fetchone(self, sql: str, params: tuple = ()) -> tuple[Any, ...] | None:
        return self._db.execute(sql, params).fetchone()  # type: ignore[union-attr]

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


class PostgresLedger(Ledger):
    placeholder = "%s"

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.url, autocommit=True)
        return self._conn

    async def _execute(self, sql: str, params: tuple = ()) -> None:
        async with self._lock:
            conn = await self._connection()
            await conn.execute(sql, params)

    async def _fetchone(self, sql: str, params: tuple = ()) -> tuple[Any, ...] | None:
        async with self._lock:
            conn = await self._connection()
            cur = await conn.execute(sql, params)
            return await cur.fetchone()

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()
            self._conn = None


def open_ledger(url: str) -> Ledger:
    """``sqlite:///relative/path``, ``sqlite:////absolute``, or a PostgreSQL
    URL (SQLAlchemy's ``postgresql+psycopg://`` spelling is accepted too)."""
    if url.startswith("sqlite:///"):
        return SqliteLedger(url.removeprefix("sqlite:///") or ":memory:")
    if url.startswith(("postgresql://", "postgresql+psycopg://", "postgres://")):
        return PostgresLedger(url.replace("postgresql+psycopg://", "postgresql://", 1))
    raise ValueError("ledger_url must be sqlite:///… or postgresql://…")
