"""Alembic, driven from code: services migrate their database on start
(or from a Kubernetes Job, with the same call), tests migrate theirs."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine


def alembic_config(script_location: Path, url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, script_location: Path, revision: str = "head") -> None:
    cfg = alembic_config(script_location)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)


def downgrade(engine: Engine, script_location: Path, revision: str = "base") -> None:
    cfg = alembic_config(script_location)
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)


def run_env(metadata, version_table: str = "alembic_version") -> None:
    """The body of a service's ``migrations/env.py``: migrate the connection
    the service (or a test) hands over, or the configured URL; see only the
    service's own tables, since services may share a database."""
    from alembic import context

    from shared.db import make_engine

    def own(name, type_, *_args) -> bool:
        return type_ != "table" or name in metadata.tables

    def run(connection) -> None:
        # SQLite cannot ALTER most things in place: batch mode rebuilds tables.
        context.configure(connection=connection, target_metadata=metadata, version_table=version_table,
                          include_name=own, render_as_batch=connection.dialect.name == "sqlite",
                          compare_type=True)
        with context.begin_transaction():
            context.run_migrations()

    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic was given neither a connection nor sqlalchemy.url")
    with make_engine(url).connect() as conn:
        run(conn)
