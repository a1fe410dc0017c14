"""The campaign's contact data ends with the campaign: after the retention
date, every book is erased (keys first). The suppression list stays: it
holds only keyed hashes, and an opt-out must outlive the campaign's data."""

from __future__ import annotations

import asyncio
from datetime import date

import structlog
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from services.contacts import book as book_ops
from services.contacts.store import DeliveryLedger, Invite, SentItem, Volunteer
from shared.db import in_session

log = structlog.get_logger(__name__)


def purge_if_due(session: Session, retention_until: date | None, today: date) -> int:
    """Erase every book if ``today`` is past the retention date; returns how
    many books were erased (0 when not due or already purged)."""
    if retention_until is None or today <= retention_until:
        return 0
    erased = 0
    for vol in session.exec(select(Volunteer).where(Volunteer.wrapped_key.is_not(None))):
        book_ops.erase_volunteer(session, vol.id)
        erased += 1
    for model in (DeliveryLedger, SentItem, Invite):
        session.exec(delete(model))
    session.commit()
    return erased


async def keep_retention(engine: Engine, retention_until: date | None, every_seconds: float = 3600) -> None:
    """Check on start, then every hour."""
    while True:
        erased = await in_session(engine, lambda s: purge_if_due(s, retention_until, date.today()))
        if erased:
            log.warning("retention.purged", books=erased, retention_until=str(retention_until))
        await asyncio.sleep(every_seconds)
