"""The planner, without a broker: which suggestions go out, what is refused,
and how a restarted matcher rebuilds its queues from the FEED stream."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.matcher.domain import Planner, ProfileIndex, Schedule, Stored, SuggestionQueue, suggestion_id
from shared.events import InterestProfile, MessagePublished, MessageWithdrawn, Variants

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2026, 11, 1, tzinfo=PARIS)
VARIANTS = Variants.model_validate({"email": {"subject": "s", "body": "b"}})


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=PARIS)


def message(mid: str, *interests: str, priority: int = 1, expires_at: datetime | None = None) -> MessagePublished:
    return MessagePublished(message_id=mid, title="t", body="b", interests=interests, variants=VARIANTS,
                            priority=priority, expires_at=expires_at)


def planner(cap: int = 5, **profiles: dict[str, int]) -> Planner:
    index = ProfileIndex()
    for vol, counts in (profiles or {"alice": {"education": 3}, "bob": {"education": 1, "transport": 2},
                                     "carol": {"transport": 4}}).items():
        index.upsert(InterestProfile(volunteer_id=vol, occurred_at=T0,
                                     audience={k: {"email": n} for k, n in counts.items()}))
    return Planner(index, SuggestionQueue(Schedule(daily_cap=cap, quiet_start=21, quiet_end=8)))


def test_a_message_becomes_one_suggestion_per_matching_volunteer_with_a_stable_id_and_score():
    p = planner()
    decision = p.handle(message("m1", "education", priority=2), seq=1, stored_at=at(3, 10), now=at(3, 10))
    by_vol = {s.volunteer_id: s for s in decision.suggestions()}
    assert set(by_vol) == {"alice", "bob"} and decision.new == 2 and decision.rejected is None
    assert by_vol["alice"].suggestion_id == suggestion_id("m1", "alice")
    assert (by_vol["alice"].audience_size, by_vol["alice"].score) == (3, 6.0)
    assert by_vol["bob"].matched_interests == ("education",)


def test_a_redelivered_message_is_published_again_under_the_same_ids_and_a_duplicate_not_at_all():
    p = planner()
    first = p.handle(message("m1", "transport"), seq=7, stored_at=at(3, 10), now=at(3, 10))
    again = p.handle(message("m1", "transport"), seq=7, stored_at=at(3, 10), now=at(3, 10, 1))
    assert sorted(s.suggestion_id for s in again.suggestions()) == sorted(s.suggestion_id for s in first.suggestions())
    assert (again.new, again.republished) == (0, 2)
    duplicate = p.handle(message("m1", "transport"), seq=9, stored_at=at(3, 10, 2), now=at(3, 10, 2))
    assert duplicate.publish == [] and duplicate.rejected == "duplicate_message"
    # the daily counts were not touched by either
    assert p.queue.sent_today("carol", at(3, 11)) == 1


def test_withdrawn_expired_and_stale_messages_are_refused():
    p = planner()
    p.withdraw(MessageWithdrawn(message_id="gone"), at(3, 9))
    assert p.handle(message("gone", "education"), seq=1, stored_at=at(3, 9), now=at(3, 10)).rejected == "withdrawn_message"
    late = message("late", "education", expires_at=at(3, 9))
    assert p.handle(late, seq=2, stored_at=at(3, 8), now=at(3, 10)).rejected == "expired_message"
    assert p.handle(message("old", "education"), seq=3, stored_at=at(3, 10) - p.horizon - timedelta(minutes=1),
                    now=at(3, 10)).rejected == "stale_message"
    assert p.queue.sent_today("alice", at(3, 10)) == 0


def test_withdrawing_a_message_drops_its_waiting_suggestions():
    p = planner()
    queued = p.handle(message("night", "education"), seq=1, stored_at=at(3, 23), now=at(3, 23))
    assert queued.publish == [] and queued.queued == 2
    decision = p.withdraw(MessageWithdrawn(message_id="night"), at(3, 23, 30))
    assert decision.dropped == {"withdrawn": 2} and len(p.queue) == 0
    assert p.tick(at(4, 8)).publish == []


def test_tick_releases_at_the_end_of_quiet_hours_and_forgets_messages_past_the_horizon():
    p = planner()
    p.handle(message("night", "transport"), seq=1, stored_at=at(3, 23), now=at(3, 23))
    assert p.tick(at(4, 7)).publish == []
    released = p.tick(at(4, 8))
    assert sorted(s.volunteer_id for s in released.publish) == ["bob", "carol"] and released.released == 2
    assert "night" in p.handled
    p.tick(at(3, 23) + p.horizon + timedelta(minutes=1))
    assert "night" not in p.handled


def _history() -> list[Stored]:
    """A day and a half of FEED: cap 2, quiet 21→8."""
    events = [
        (at(3, 9), message("a", "education")),
        (at(3, 10), message("b", "education", "transport")),
        (at(3, 11), message("c", "education", priority=3)),  # over the cap for alice and bob
        (at(3, 22), message("d", "transport")),  # quiet hours
        (at(3, 22, 30), message("e", "transport", priority=0)),
        (at(3, 23), MessageWithdrawn(message_id="e")),
        (at(4, 9), message("f", "education", expires_at=at(4, 20))),
    ]
    return [Stored(seq, moment, event) for seq, (moment, event) in enumerate(events, 1)]


def _lived(cap: int, history: list[Stored], until: datetime) -> Planner:
    """The same history, lived through by a running matcher with a periodic pass."""
    p = planner(cap)
    clock = history[0].at
    for stored in history:
        while clock < stored.at:
            p.tick(clock)
            clock += timedelta(minutes=15)
        if isinstance(stored.event, MessageWithdrawn):
            p.withdraw(stored.event, stored.at)
        else:
            p.handle(stored.event, seq=stored.seq, stored_at=stored.at, now=stored.at)
    while clock <= until:
        p.tick(clock)
        clock += timedelta(minutes=15)
    return p


def test_a_restarted_planner_rebuilds_the_same_queues_and_counts_from_the_feed_history():
    now = at(4, 9, 30)
    history = _history()
    lived = _lived(2, history, now)
    rebuilt = planner(2)
    decision = rebuilt.rebuild(list(reversed(history)), now)  # any order: sorted by sequence
    for vol in ("alice", "bob", "carol"):
        assert [(w.message_id, w.priority) for w in rebuilt.queue.waiting(vol)] == \
               [(w.message_id, w.priority) for w in lived.queue.waiting(vol)], vol
        assert rebuilt.queue.sent_today(vol, now) == lived.queue.sent_today(vol, now), vol
    assert {m: h.published for m, h in rebuilt.handled.items()} == {m: h.published for m, h in lived.handled.items()}
    # a and b filled alice's and bob's 3rd; c (urgent) waited for the 4th's opening, and
    # went out first there; e was withdrawn while it waited; bob's 4th is full, f waits for him
    assert rebuilt.handled["c"].published == {"alice", "bob"} and rebuilt.handled["e"].published == set()
    assert [w.message_id for w in rebuilt.queue.waiting("bob")] == ["f"]
    assert decision.publish == []  # nothing went out in the last two minutes
    assert decision.queued == len(lived.queue)


def test_a_rebuild_publishes_again_what_went_out_within_the_dedupe_window():
    history = _history()
    decision = planner(2).rebuild(history, at(4, 9, 1))
    assert sorted((s.message_id, s.volunteer_id) for s in decision.publish) == [("f", "alice")]
    [event] = decision.suggestions()
    assert event.suggestion_id == suggestion_id("f", "alice") and event.occurred_at == at(4, 9, 1)


def test_a_message_stored_while_the_matcher_was_down_goes_out_when_the_durable_consumer_delivers_it():
    p = planner(2)
    history = [Stored(1, at(3, 14), message("while-down", "transport"))]
    assert p.rebuild(history, at(3, 15)).publish == []  # the rebuild alone cannot tell it was never sent
    decision = p.handle(history[0].event, seq=1, stored_at=at(3, 14), now=at(3, 15))
    assert sorted(s.volunteer_id for s in decision.publish) == ["bob", "carol"]
    assert p.queue.sent_today("carol", at(3, 15)) == 1  # counted once, not twice


def test_a_rebuild_skips_messages_older_than_the_horizon_and_applies_every_withdrawal():
    p = planner(2)
    now = at(10, 12)
    history = [
        Stored(1, now - p.horizon - timedelta(hours=1), message("ancient", "education")),
        Stored(2, at(9, 22), message("tonight", "education")),
        Stored(3, at(9, 23), MessageWithdrawn(message_id="tonight")),
    ]
    p.rebuild(history, now)
    assert "ancient" not in p.handled and len(p.queue) == 0
    assert p.handle(history[0].event, seq=1, stored_at=history[0].at, now=now).rejected == "stale_message"
    assert p.handle(history[1].event, seq=2, stored_at=history[1].at, now=now).publish == []


def test_an_opening_after_the_watermark_that_no_replica_ran_goes_out_late_not_lost():
    # "night" waits for the 8:00 opening on the 4th; the matcher was down from
    # 23:30 on the 3rd to 9:30 on the 4th, so nobody released it.
    history = [Stored(1, at(3, 23), message("night", "education"))]
    without_note = planner().rebuild(history, at(4, 9, 30))
    assert without_note.publish == [] and without_note.assumed_released == 2
    noted = planner().rebuild(history, at(4, 9, 30), released_until=at(3, 23, 30))
    assert sorted(p.volunteer_id for p in noted.publish) == ["alice", "bob"]
    assert (noted.released_late, noted.assumed_released, noted.republished) == (2, 0, 0)
    # the note says the 8:00 opening ran: nothing goes out again
    ran = planner().rebuild(history, at(4, 9, 30), released_until=at(4, 8, 0))
    assert ran.publish == [] and ran.released_late == 0


def test_suggestions_carry_the_regions_they_reach():
    index = ProfileIndex()
    index.upsert(InterestProfile(volunteer_id="alice", occurred_at=T0, audience={"education": {"email": 3}},
                                 regions={"bretagne": 1, "idf": 2}))
    p = Planner(index, SuggestionQueue(Schedule(quiet_start=0, quiet_end=0)))
    broad = p.handle(message("m1", "education"), seq=1, stored_at=at(3, 10), now=at(3, 10))
    assert [s.matched_regions for s in broad.suggestions()] == [("bretagne", "idf")]
    targeted = MessagePublished(message_id="m2", title="t", body="b", interests=("education",), variants=VARIANTS,
                                regions=("idf", "occitanie"))
    [event] = p.handle(targeted, seq=2, stored_at=at(3, 11), now=at(3, 11)).suggestions()
    assert (event.matched_regions, event.audience_size) == (("idf",), 2)
