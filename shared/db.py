"""Database engines for the services that keep state (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio

from sqlalchemy import event, inspect, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, SQLModel, create_engine

from shared.events import utcnow

T = TypeVar("T")
M = TypeVar("M", bound=SQLModel)


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # WAL lets HTTP reads proceed while a NATS handler writes.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def database_ready(engine: Engine) -> tuple[bool, str]:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return True, engine.dialect.name


async def in_session(engine: Engine, work: Callable[[Session], T]) -> T:
    """Run ``work(session)`` in a worker thread, so blocking database I/O
    never stalls the event loop that NATS and HTTP share."""

    def run() -> T:
        with Session(engine, expire_on_commit=False) as session:
            return work(session)

    return await anyio.to_thread.run_sync(run)


def insert_or_get(session: Session, row: M, model: type[M], key: object) -> M:
    """Insert ``row``, or return the row a concurrent request inserted first
    under the same key (double clicks, retried requests)."""
    session.add(row)
    try:
        session.commit()
        return row
    except IntegrityError:
        session.rollback()
        found = session.get(model, key)
        if found is None:  # another constraint refused the row, not a concurrent twin
            raise
        return found


def mark_once(session: Session, model: type[SQLModel], key: object, **values: object) -> bool:
    """Set ``published_at`` (and ``values``) on a row unless another request
    did it first; True for the one request that did."""
    mapper = inspect(model)
    done = session.exec(
        update(model)
        .where(mapper.primary_key[0] == key, mapper.c.published_at.is_(None))
        .values(published_at=utcnow(), **values)
    )
    session.commit()
    return done.rowcount == 1
