"""The staff report of one message, persisted: every figure staff can see
(API, console, live stream, CLI) is read through ``report``, which runs
domain.staff_report on the facts and stores what it showed.

The shown state is stored, not recomputed, because a figure that moved may
never move back or sideways: a replica (or a restart) computing afresh from
the facts could show a value that differs from the one shown before by one
volunteer. Two replicas racing are settled by compare-and-set on the row's
version: the loser reports from the winner's state."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from services.feed.domain import ShownState, StaffReport, render, staff_report
from services.feed.store import Message, ReachShown, message_facts
from shared.events import Channel, utcnow

CHANNELS = tuple(c.value for c in Channel)
ATTEMPTS = 5


def report(session: Session, message: Message, k: int, settle_seconds: float) -> StaffReport:
    """``settle_seconds``: only facts recorded at least that long ago are
    counted, so a fact whose transaction commits late still falls after the
    cut it belongs to, never inside one already shown."""
    for _ in range(ATTEMPTS):
        row = session.get(ReachShown, message.id, populate_existing=True)
        state = ShownState.from_json(row.state if row else None)
        cut = utcnow() - timedelta(seconds=settle_seconds)
        if cut <= _latest(state):  # this clock is behind the replica that moved it: show what is shown
            break
        shown, moved = staff_report(message.id, message.interests, message.regions,
                                    message_facts(session, message.id, cut), state, k, cut, CHANNELS)
        if moved is None or _save(session, message.id, row, moved):
            return shown
    return render(ShownState.from_json(row.state if row else None), message.id, message.interests,
                  message.regions, k, CHANNELS)


def _latest(state: ShownState) -> datetime:
    return max((s.as_of for s in state.cells.values()), default=datetime.min.replace(tzinfo=utcnow().tzinfo))


def _save(session: Session, message_id: str, row: ReachShown | None, moved: ShownState) -> bool:
    """Store ``moved`` unless another report moved the row first."""
    try:
        if row is None:
            session.add(ReachShown(message_id=message_id, version=1, state=moved.to_json()))
            session.commit()
            return True
        done = session.execute(update(ReachShown)
                               .where(ReachShown.message_id == message_id, ReachShown.version == row.version)
                               .values(version=row.version + 1, state=moved.to_json(), updated_at=utcnow()))
        session.commit()
        return done.rowcount == 1
    except IntegrityError:
        session.rollback()
        return False
