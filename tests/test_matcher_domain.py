"""The matcher's index, without a broker."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from services.matcher.domain import ProfileIndex, suggestion_id
from shared.events import InterestProfile, MessagePublished, Variants

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)


def profile(vol: str, at: datetime = T0, **counts: int) -> InterestProfile:
    return InterestProfile(volunteer_id=vol, occurred_at=at,
                           audience={k: {"email": v} for k, v in counts.items()})


def message(*interests: str) -> MessagePublished:
    return MessagePublished(
        message_id="m1", title="t", body="b", interests=interests,
        variants=Variants.model_validate({"email": {"subject": "s", "body": "b"}}),
    )


def test_suggests_to_volunteers_sharing_an_interest_with_matched_interests_and_audience():
    index = ProfileIndex()
    index.upsert(profile("alice", education=3, transport=5))
    index.upsert(profile("bob", seniors=2))
    index.upsert(profile("carol", transport=1))
    matches = {m.volunteer_id: m for m in index.match(message("education", "transport"))}
    assert set(matches) == {"alice", "carol"}
    assert matches["alice"].matched_interests == ("education", "transport")
    # a contact may hold both interests: the audience never double-counts
    assert matches["alice"].audience_size == 5
    assert matches["carol"].audience_size == 1


def test_a_message_without_interests_reaches_every_volunteer_with_an_audience():
    index = ProfileIndex()
    index.upsert(profile("alice", education=3))
    index.upsert(profile("bob"))  # no confirmed contact yet
    assert [m.volunteer_id for m in index.match(message())] == ["alice"]


def test_a_new_profile_replaces_the_old_and_an_older_one_is_ignored():
    index = ProfileIndex()
    index.upsert(profile("alice", education=3))
    assert index.upsert(profile("alice", T0 + timedelta(minutes=1), transport=2))
    assert index.match(message("education")) == []
    assert not index.upsert(profile("alice", T0 - timedelta(minutes=1), education=9))
    assert [m.volunteer_id for m in index.match(message("transport"))] == ["alice"]
    assert len(index) == 1


def test_interests_with_zero_confirmed_contacts_do_not_match():
    index = ProfileIndex()
    index.upsert(profile("alice", education=0, transport=2))
    assert index.match(message("education")) == []


def test_suggestion_ids_are_stable_per_message_and_volunteer():
    assert suggestion_id("m1", "alice") == suggestion_id("m1", "alice")
    assert suggestion_id("m1", "alice") != suggestion_id("m1", "bob")
    assert suggestion_id("m1", "alice") != suggestion_id("m2", "alice")
