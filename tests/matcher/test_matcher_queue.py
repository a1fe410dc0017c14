"""The pacing queue, with explicit clocks: daily cap, quiet hours, priority,
withdrawal, expiry. Times are Paris local times (UTC+1 in November)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest

from services.matcher.domain import Pending, Schedule, SuggestionQueue

PARIS = ZoneInfo("Europe/Paris")


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=PARIS)


def pending(message: str, vol: str = "alice", *, priority: int = 1, audience: int = 3,
            expires_at: datetime | None = None) -> Pending:
    return Pending(message, vol, ("education",), audience, audience * 2.0 ** (priority - 1), priority, expires_at)


def ids(items) -> list[str]:
    return [p.message_id for p in items]


def test_under_the_cap_and_outside_quiet_hours_a_suggestion_goes_out_at_once():
    queue = SuggestionQueue(Schedule(daily_cap=2))
    out = queue.offer([pending("m1"), pending("m1", "bob")], at(3, 10))
    assert [(p.message_id, p.volunteer_id) for p in out.publish] == [("m1", "alice"), ("m1", "bob")]
    assert out.queued == [] and len(queue) == 0
    assert queue.sent_today("alice", at(3, 20)) == 1
    assert queue.sent_today("alice", at(4, 9)) == 0  # a new local day


def test_over_the_daily_cap_suggestions_wait_for_the_next_day_then_the_cap_applies_again():
    queue = SuggestionQueue(Schedule(daily_cap=2))
    for n, hour in enumerate((9, 10, 11, 12, 13)):
        queue.offer([pending(f"m{n}")], at(3, hour))
    assert ids(queue.waiting("alice")) == ["m2", "m3", "m4"]
    assert ids(queue.release(at(3, 14)).released) == []  # same day: still capped
    assert ids(queue.release(at(4, 7, 59)).released) == []  # next day, but quiet until 8
    out = queue.release(at(4, 8))
    assert ids(out.released) == ["m2", "m3"]
    assert ids(queue.waiting("alice")) == ["m4"]
    assert ids(queue.release(at(4, 8, 1)).released) == []
    # the day's cap is used: a new message waits behind m4
    assert ids(queue.offer([pending("m5")], at(4, 9)).queued) == ["m5"]
    assert ids(queue.release(at(5, 8)).released) == ["m4", "m5"]


def test_quiet_hours_hold_suggestions_until_they_end_even_across_midnight():
    queue = SuggestionQueue(Schedule(daily_cap=5, quiet_start=21, quiet_end=8))
    out = queue.offer([pending("m1")], at(3, 22, 30))
    assert out.publish == [] and ids(out.queued) == ["m1"]
    for moment in (at(3, 23), at(4, 0, 0), at(4, 3), at(4, 7, 59)):
        assert queue.release(moment).released == [], moment
    assert ids(queue.release(at(4, 8)).released) == ["m1"]
    assert queue.sent_today("alice", at(4, 9)) == 1


def test_priority_then_score_decides_what_waits_and_what_goes_first():
    queue = SuggestionQueue(Schedule(daily_cap=2))
    queue.offer([pending("low-1", priority=0), pending("low-2", priority=0)], at(3, 9))  # fills the day
    queue.offer([pending("normal", priority=1, audience=1)], at(3, 10))
    queue.offer([pending("urgent", priority=3)], at(3, 11))
    queue.offer([pending("normal-big", priority=1, audience=50)], at(3, 12))
    assert ids(queue.waiting("alice")) == ["urgent", "normal-big", "normal"]
    assert ids(queue.release(at(4, 8)).released) == ["urgent", "normal-big"]
    assert ids(queue.waiting("alice")) == ["normal"]


def test_a_queue_under_the_cap_outside_quiet_hours_is_released_in_order_when_offered():
    """Between the end of the quiet hours and the periodic pass, a new offer
    must not jump the queue: the waiting ones go first."""
    queue = SuggestionQueue(Schedule(daily_cap=2))
    queue.offer([pending("night-urgent", priority=3), pending("night-normal")], at(3, 23))
    out = queue.offer([pending("morning-low", priority=0)], at(4, 8, 0))
    assert ids(out.released) == ["night-urgent", "night-normal"]
    assert out.publish == [] and ids(out.queued) == ["morning-low"]


def test_withdrawal_empties_every_queue_of_the_message_and_says_what_it_dropped():
    queue = SuggestionQueue(Schedule(daily_cap=1))
    queue.offer([pending("m1"), pending("m1", "bob")], at(3, 9))  # both sent: the cap is used
    queue.offer([pending("m2"), pending("m2", "bob"), pending("m3")], at(3, 10))
    out = queue.withdraw("m2")
    assert sorted((p.volunteer_id, reason) for p, reason in out.dropped) == [("alice", "withdrawn"),
                                                                              ("bob", "withdrawn")]
    assert out.outgoing == [] and ids(queue.waiting("alice")) == ["m3"] and queue.waiting("bob") == []
    assert queue.withdraw("m2").dropped == [] and queue.withdraw("nothing").dropped == []
    # a suggestion already out still counts for the day
    queue.withdraw("m1")
    assert queue.sent_today("alice", at(3, 11)) == 1
    assert ids(queue.release(at(4, 8)).released) == ["m3"]
    assert queue.withdraw("m1", "expired").dropped == []


def test_expired_suggestions_are_never_sent_and_leave_the_queue():
    queue = SuggestionQueue(Schedule(daily_cap=5))
    out = queue.offer([pending("old", expires_at=at(3, 9))], at(3, 10))
    assert out.publish == [] and [(p.message_id, r) for p, r in out.dropped] == [("old", "expired")]
    queue.offer([pending("short", expires_at=at(4, 6)), pending("long", expires_at=at(5, 0))], at(3, 22))
    assert len(queue) == 2
    out = queue.release(at(4, 6, 30))  # quiet still, but the expired one leaves now
    assert [(p.message_id, r) for p, r in out.dropped] == [("short", "expired")] and len(queue) == 1
    assert ids(queue.release(at(4, 8)).released) == ["long"]


def test_a_suggestion_that_waited_too_long_is_dropped_as_stale():
    queue = SuggestionQueue(Schedule(daily_cap=1, max_wait=timedelta(hours=30)))
    queue.offer([pending("m1"), pending("m2", priority=0), pending("m3", priority=0)], at(3, 10))
    assert ids(queue.release(at(4, 8)).released) == ["m2"]
    out = queue.release(at(4, 16))
    assert [(p.message_id, r) for p, r in out.dropped] == [("m3", "stale")] and len(queue) == 0


def test_the_same_suggestion_offered_twice_waits_once():
    queue = SuggestionQueue(Schedule(daily_cap=5))
    queue.offer([pending("m1")], at(3, 22))
    assert queue.offer([pending("m1")], at(3, 22, 5)).queued == []
    assert len(queue) == 1 and ids(queue.release(at(4, 8)).released) == ["m1"]


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        (Schedule(quiet_start=21, quiet_end=8), at(3, 10), at(4, 8)),  # midnight is quiet
        (Schedule(quiet_start=21, quiet_end=8), at(4, 8), at(5, 8)),
        (Schedule(quiet_start=0, quiet_end=0), at(3, 10), at(4, 0)),  # no quiet hours: each day start
        (Schedule(quiet_start=1, quiet_end=6), at(3, 10), at(4, 0)),
        (Schedule(quiet_start=1, quiet_end=6), at(4, 0), at(4, 6)),
        (Schedule(quiet_start=13, quiet_end=14), at(3, 12), at(3, 14)),
        # the night clocks go forward (29 March 2026, 02:00 → 03:00 in Paris)
        (Schedule(quiet_start=21, quiet_end=8), at(28, 22, month=3), at(29, 8, month=3)),
    ],
)
def test_openings_are_quiet_hour_ends_and_day_starts_outside_quiet_hours(schedule, after, expected):
    assert schedule.next_opening(after) == expected


def test_days_and_quiet_hours_are_the_campaigns_local_time_not_utc():
    schedule = Schedule(quiet_start=21, quiet_end=8, timezone="Europe/Paris")
    late = datetime(2026, 11, 3, 23, 30, tzinfo=timezone.utc)  # 00:30 in Paris, the 4th
    assert schedule.day(late).day == 4 and schedule.quiet(late)
    assert not schedule.quiet(datetime(2026, 11, 4, 7, 0, tzinfo=timezone.utc))  # 08:00 in Paris
    assert Schedule(quiet_start=21, quiet_end=8, timezone="UTC").quiet(datetime(2026, 11, 4, 7, 0, tzinfo=timezone.utc))


def test_a_schedule_refuses_impossible_settings():
    for bad in ({"daily_cap": 0}, {"quiet_start": 24}, {"timezone": "Mars/Olympus"}):
        with pytest.raises((ValueError, ZoneInfoNotFoundError)):
            Schedule(**bad)
