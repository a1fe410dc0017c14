"""The staff report of one message, persisted: every figure staff can see
(API, console, live stream, CLI) is read through ``report``, which runs
domain.staff_report on the facts and stores what it showed.

The shown state is stored, not recomputed, because a figure that moved may
never move back or sideways: a replica (or a restart) computing afresh from
the facts could show a value that differs from the one shown before by one
volunteer. Two replicas racing are settled by compare-and-set on the row's
version: the loser reports from the winner's state."""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from services.feed.domain import ShownState, StaffReport, render, staff_report
from services.feed.store import Message, ReachShown, facts_fingerprint, message_facts
from shared.events import Channel, utcnow

CHANNELS = tuple(c.value for c in Channel)
ATTEMPTS = 5
# A report is a pass over every fact of the message (a quarter of a second
# at 10,000 volunteers) and most readings (the live stream's, every 2 s)
# find nothing new: the last report of each message is kept, keyed by the
# stored state's version and the facts' count and newest time.
REMEMBERED = 512
_last: OrderedDict[str, tuple[tuple, StaffReport]] = OrderedDict()
_lock = threading.Lock()


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
        key = (row.version if row else 0, k, message.updated_at, facts_fingerprint(session, message.id, cut))
        with _lock:
            remembered = _last.get(message.id)
        if remembered is not None and remembered[0] == key:
            return remembered[1]
        shown, moved = staff_report(message.id, message.interests, message.regions,
                                    message_facts(session, message.id, cut), state, k, cut, CHANNELS)
        if moved is None:
            _remember(message.id, key, shown)
            return shown
        if _save(session, message.id, row, moved):
            return shown
    return displayed(session, message, k)


def displayed(session: Session, message: Message, k: int) -> StaffReport:
    """The figures as they were last shown, without reading the facts (the
    message list: the scheduler and the readings of each message move them)."""
    row = session.get(ReachShown, message.id, populate_existing=True)
    return render(ShownState.from_json(row.state if row else None), message.id, message.interests,
                  message.regions, k, CHANNELS)


def _remember(message_id: str, key: tuple, shown: StaffReport) -> None:
    with _lock:
        _last[message_id] = (key, shown)
        _last.move_to_end(message_id)
        while len(_last) > REMEMBERED:
            _last.popitem(last=False)


def _latest(state: ShownState) -> datetime:
    return max((s.as_of for s in state.cells.values()), default=datetime.min.replace(tzinfo=utcnow().tzinfo))


def _save(session: Session, message_id: str, row: ReachShown | None, moved: ShownState) -> bool:
    """Store ``moved`` unless another report moved the row first."""
    try:
        if row is None:
            session.add(ReachShown(message_id=message_id, version=1, state=moved.to_json()))
            session.commit()
            return True
        done = session.exec(update(ReachShown)
                               .where(col(ReachShown.message_id) == message_id, col(ReachShown.version) == row.version)
                               .values(version=row.version + 1, state=moved.to_json(), updated_at=utcnow()))
        session.commit()
        return done.rowcount == 1
    except IntegrityError:
        session.rollback()
        return False
