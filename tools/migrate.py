"""python -m tools.migrate feed|contacts — bring a service's database to the
current schema, then exit.

Kubernetes runs it as each pod's init container, so a new version never
serves before its schema is there. Pods of a rollout start together: on
PostgreSQL the migration holds an advisory lock, so the first one migrates
and the others wait, then find nothing to do (Alembic is idempotent at head).
The services still migrate on start, which is then a no-op."""

from __future__ import annotations

import argparse
import zlib
from collections.abc import Callable
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Engine

from shared.db import make_engine


def _feed() -> tuple[str, Callable[[Engine], None]]:
    from services.feed.settings import FeedSettings
    from services.feed.store import create_schema

    return FeedSettings().database_url, create_schema


def _contacts() -> tuple[str, Callable[[Engine], None]]:
    from services.contacts.settings import ContactsSettings
    from services.contacts.store import create_schema

    return ContactsSettings().database_url, create_schema


SERVICES = {"feed": _feed, "contacts": _contacts}


@contextmanager
def migration_lock(engine: Engine, service: str):
    """One migrator at a time per service and database (PostgreSQL; SQLite
    has one writer anyway)."""
    if engine.dialect.name != "postgresql":
        yield
        return
    key = zlib.crc32(f"maillage-migrate-{service}".encode())
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})


def migrate(service: str) -> None:
    url, create_schema = SERVICES[service]()
    engine = make_engine(url)
    try:
        with migration_lock(engine, service):
            create_schema(engine)
    finally:
        engine.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.migrate", description=__doc__.splitlines()[0])
    parser.add_argument("service", choices=sorted(SERVICES))
    migrate(parser.parse_args(argv).service)


if __name__ == "__main__":
    main()
