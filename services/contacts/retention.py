"""The retention rule: past the campaign's retention date, every book is
erased (keys first). The suppression list stays: it holds only keyed
hashes, and an opt-out must outlive the campaign's data. Run by
usecases/purge_books.py, which commits."""

from __future__ import annotations

from datetime import date

from sqlalchemy import delete
from sqlmodel import Session, col, select

from services.contacts import book as book_ops
from services.contacts.store import DeliveryLedger, Invite, SentItem, Volunteer


def purge_if_due(session: Session, retention_until: date | None, today: date) -> int:
    """Erase every book if ``today`` is past the retention date; returns how
    many books were erased (0 when not due or already purged)."""
    if retention_until is None or today <= retention_until:
        return 0
    erased = 0
    for vol in session.exec(select(Volunteer).where(col(Volunteer.wrapped_key).is_not(None))):
        book_ops.erase_volunteer(session, vol.id)
        erased += 1
    for model in (DeliveryLedger, SentItem, Invite):
        session.exec(delete(model))
    return erased
