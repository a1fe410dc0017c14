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
