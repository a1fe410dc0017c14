"""The campaign's contact data ends with the campaign: after the retention
date, every book is erased (keys first). The suppression list stays: it
holds only keyed hashes, and an opt-out must outlive the campaign's data."""

from __future__ import annotations

import asyncio
from datetime import date

import structlog
from sqlalchemy.engine import Engine

from services.contacts.retention import purge_if_due
from services.contacts.usecases._unit import unit

log = structlog.get_logger(__name__)


async def keep_retention(engine: Engine, retention_until: date | None, every_seconds: float = 3600) -> None:
    """Check on start, then every hour."""
    while True:
        erased = await unit(engine, lambda s: purge_if_due(s, retention_until, date.today()))
        if erased:
            log.warning("retention.purged", books=erased, retention_until=str(retention_until))
        await asyncio.sleep(every_seconds)
