"""The matcher's index, without a broker."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from services.matcher.domain import Partition, ProfileIndex, partition_of, score, suggestion_id
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


# -- targeting, taxonomy, partitions ------------------------------------------------------


def placed(vol: str, at: datetime = T0, *, regions=None, locales=None, **counts: int) -> InterestProfile:
    return InterestProfile(volunteer_id=vol, occurred_at=at, regions=regions or {}, locales=locales or {},
                           audience={k: {"email": v} for k, v in counts.items()})


def targeted(*interests: str, regions=(), locales=(), priority: int = 1) -> MessagePublished:
    return message(*interests).model_copy(update={"regions": regions, "locales": locales, "priority": priority})


def test_regions_reach_only_volunteers_with_confirmed_contacts_there_and_cap_the_audience():
    index = ProfileIndex()
    index.upsert(placed("alice", regions={"bretagne": 2, "idf": 7}, education=5))
    index.upsert(placed("bob", regions={"idf": 0, "occitanie": 4}, education=3))  # none left in idf
    index.upsert(placed("carol", education=9))  # no region known: not reached by a targeted message
    matches = index.match(targeted("education", regions=("bretagne",)))
    assert [(m.volunteer_id, m.audience_size) for m in matches] == [("alice", 2)]
    both = index.match(targeted("education", regions=("bretagne", "occitanie")))
    assert [(m.volunteer_id, m.audience_size) for m in both] == [("alice", 2), ("bob", 3)]


def test_locales_filter_like_regions_and_combine_with_them():
    index = ProfileIndex()
    index.upsert(placed("alice", regions={"idf": 4}, locales={"fr": 4}, education=4))
    index.upsert(placed("bob", regions={"idf": 3}, locales={"en": 1, "fr": 2}, education=3))
    index.upsert(placed("carol", regions={"bretagne": 3}, locales={"en": 3}, education=3))
    assert [m.volunteer_id for m in index.match(targeted("education", locales=("en",)))] == ["bob", "carol"]
    only = index.match(targeted("education", regions=("idf",), locales=("en",)))
    assert [(m.volunteer_id, m.audience_size) for m in only] == [("bob", 1)]


def test_a_broad_message_reaches_volunteers_known_only_by_their_regions_and_counts_their_largest_total():
    index = ProfileIndex()
    index.upsert(placed("alice", regions={"idf": 6, "bretagne": 1}, education=2))
    index.upsert(placed("bob", locales={"fr": 2}))
    index.upsert(placed("carol"))
    matches = {m.volunteer_id: m for m in index.match(targeted())}
    assert set(matches) == {"alice", "bob"}
    assert matches["alice"].audience_size == 7 and matches["alice"].matched_interests == ("education",)
    assert matches["bob"].audience_size == 2 and matches["bob"].matched_interests == ()


def test_a_new_profile_unlinks_the_old_regions_and_locales():
    index = ProfileIndex()
    index.upsert(placed("alice", regions={"idf": 2}, locales={"fr": 2}, education=2))
    index.upsert(placed("alice", T0 + timedelta(minutes=1), regions={"bretagne": 2}, locales={"br": 2}, education=2))
    assert index.match(targeted("education", regions=("idf",))) == []
    assert index.match(targeted("education", locales=("fr",))) == []
    assert [m.volunteer_id for m in index.match(targeted("education", regions=("bretagne",)))] == ["alice"]


def test_unknown_interests_are_left_out_and_reported_once_a_taxonomy_exists():
    index = ProfileIndex()
    first = index.upsert(placed("alice", education=2, astrology=5))
    assert first.changed and first.unknown == ()  # no taxonomy yet: everything counts
    assert [m.volunteer_id for m in index.match(message("astrology"))] == ["alice"]
    left_out = index.set_taxonomy({"education", "transport"})
    assert left_out == {"alice": ("astrology",)}
    assert index.match(message("astrology")) == []
    assert [m.audience_size for m in index.match(message())] == [2]  # the broad reach forgets it too
    result = index.upsert(placed("bob", T0, education=1, **{"local:lyon": 3, "horoscope": 1}))
    assert result.changed and result.unknown == ("horoscope",)  # local:<commune> needs no entry
    assert [m.volunteer_id for m in index.match(message("local:lyon"))] == ["bob"]
    # the taxonomy grows: what was kept aside counts again
    index.set_taxonomy({"education", "astrology"})
    assert [m.volunteer_id for m in index.match(message("astrology"))] == ["alice"]
    assert index.set_taxonomy([]) == {} and index.taxonomy is None  # empty: no taxonomy, all count
    assert [m.volunteer_id for m in index.match(message("horoscope"))] == ["bob"]


def test_an_out_of_order_profile_says_why_it_was_ignored():
    index = ProfileIndex()
    index.upsert(profile("alice", T0 + timedelta(hours=1), education=1))
    result = index.upsert(profile("alice", T0, education=9))
    assert not result and result.reason == "out_of_order"


def test_score_is_the_audience_weighted_by_priority():
    assert [score(10, p) for p in range(4)] == [5.0, 10.0, 20.0, 40.0]


def test_partitions_split_volunteers_stably_evenly_and_without_overlap():
    vols = [f"vol-{i}" for i in range(4000)]
    parts = [Partition(i, 3) for i in range(3)]
    owners = [[p.index for p in parts if p.owns(v)] for v in vols]
    assert all(len(o) == 1 for o in owners)  # every volunteer has exactly one owner
    sizes = [sum(1 for o in owners if o == [i]) for i in range(3)]
    assert min(sizes) > 1200  # even enough: 1333 expected each
    assert [partition_of(v, 3) for v in vols[:50]] == [partition_of(v, 3) for v in vols[:50]]
    assert partition_of("vol-0", 3) == int(hashlib.sha256(b"vol-0").hexdigest()[:16], 16) % 3


def test_an_index_keeps_only_the_profiles_of_its_partition():
    index = ProfileIndex(Partition(1, 2))
    vols = [f"vol-{i}" for i in range(40)]
    results = {v: index.upsert(profile(v, education=1)) for v in vols}
    mine = {v for v in vols if partition_of(v, 2) == 1}
    assert index.volunteers() == mine and 0 < len(mine) < 40
    assert {r.reason for v, r in results.items() if v not in mine} == {"other_partition"}
    assert {m.volunteer_id for m in index.match(message("education"))} == mine


def test_a_partition_that_does_not_exist_is_refused():
    for index, count in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(ValueError):
            Partition(index, count)
