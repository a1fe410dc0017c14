"""What a dispatch outcome means, to staff and to the volunteer: one
answer (shared.outcomes.meaning) for both, for every kind; results from a
producer older than the kind still count right; a bounce after delivery
moves the email from reached to bounced in staff's figures, once k
volunteers' emails did."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlmodel import Session

from services.feed.domain import Facts, ShownState, staff_report
from services.feed.store import DeliveryFact, add_once, create_schema, facts_fingerprint, message_facts, revise_delivery
from shared.db import make_engine
from shared.events import DispatchResult, utcnow
from shared.outcomes import OutcomeKind, StaffFigure, VolunteerLine, from_legacy, meaning, volunteer_line

IDS = {"job_id": "job-1", "relay_id": "relay-1", "message_id": "m1", "volunteer_id": "vol-1"}

# every kind, as staff count it and as the volunteer reads it (email, social)
MEANINGS = {
    OutcomeKind.delivered: (StaffFigure.reached, VolunteerLine.delivered, VolunteerLine.posted),
    OutcomeKind.refused: (StaffFigure.bounced, VolunteerLine.bounced, VolunteerLine.bounced),
    OutcomeKind.bounced: (StaffFigure.bounced, VolunteerLine.bounced, VolunteerLine.bounced),
    OutcomeKind.suppressed: (StaffFigure.opted_out, VolunteerLine.failed, VolunteerLine.failed),
    OutcomeKind.withdrawn: (StaffFigure.dropped, VolunteerLine.failed, VolunteerLine.failed),
    OutcomeKind.unreadable: (StaffFigure.failed, VolunteerLine.failed, VolunteerLine.failed),
    OutcomeKind.unsafe_header: (StaffFigure.failed, VolunteerLine.failed, VolunteerLine.failed),
    OutcomeKind.egress_refused: (StaffFigure.failed, VolunteerLine.failed, VolunteerLine.failed),
    OutcomeKind.token_revoked: (StaffFigure.failed, VolunteerLine.failed, VolunteerLine.failed),
    OutcomeKind.credentials_incomplete: (StaffFigure.failed, VolunteerLine.failed, VolunteerLine.failed),
    OutcomeKind.rejected: (StaffFigure.failed, VolunteerLine.failed, VolunteerLine.failed),
    OutcomeKind.failed_after_retries: (StaffFigure.failed, VolunteerLine.failed, VolunteerLine.failed),
    OutcomeKind.failed: (StaffFigure.failed, VolunteerLine.failed, VolunteerLine.failed),
}


def test_every_kind_has_one_meaning_for_staff_and_the_volunteer():
    assert set(MEANINGS) == set(OutcomeKind)
    for kind, (staff, by_email, by_post) in MEANINGS.items():
        assert (meaning(kind, "email").staff, meaning(kind, "email").volunteer) == (staff, by_email), kind
        assert (meaning(kind, "mastodon").staff, meaning(kind, "mastodon").volunteer) == (staff, by_post), kind
        assert volunteer_line(kind, "email") is by_email


def test_staff_and_the_volunteer_agree_on_what_bounced_and_what_reached():
    for kind in OutcomeKind:
        for channel in ("email", "bluesky"):
            m = meaning(kind, channel)
            assert (m.staff is StaffFigure.bounced) == (m.volunteer is VolunteerLine.bounced), kind
            assert (m.staff is StaffFigure.reached) == (m.volunteer in (VolunteerLine.delivered,
                                                                        VolunteerLine.posted)), kind


def test_a_job_without_a_result_is_pending_to_its_volunteer():
    assert volunteer_line(None, "email") is VolunteerLine.pending
    assert from_legacy("queued", None) is None


@pytest.mark.parametrize("status, reason, kind", [
    ("delivered", None, OutcomeKind.delivered),
    ("failed", "smtp 550", OutcomeKind.refused),
    ("failed", "smtp 554", OutcomeKind.refused),
    ("failed", "bounce 5.1.1", OutcomeKind.bounced),
    ("failed", "suppressed", OutcomeKind.suppressed),
    ("failed", "withdrawn", OutcomeKind.withdrawn),
    ("failed", "unreadable", OutcomeKind.unreadable),
    ("failed", "credentials_unreadable", OutcomeKind.unreadable),
    ("failed", "unsafe_header", OutcomeKind.unsafe_header),
    ("failed", "egress_refused", OutcomeKind.egress_refused),
    ("failed", "token_revoked", OutcomeKind.token_revoked),
    ("failed", "credentials_incomplete", OutcomeKind.credentials_incomplete),
    ("failed", "http 422", OutcomeKind.rejected),
    ("failed", "duplicate", OutcomeKind.rejected),
    ("failed", "retries exhausted (smtp 421)", OutcomeKind.failed_after_retries),
    ("failed", "dead letter after 5 attempts: smtp 421", OutcomeKind.failed_after_retries),
    ("failed", "smtp 4211", OutcomeKind.failed),
    ("failed", None, OutcomeKind.failed),
    ("failed", "something new", OutcomeKind.failed),
])
def test_an_old_shape_result_without_a_kind_counts_as_its_reason_meant(status, reason, kind):
    # as an older producer sends it: no "outcome" field at all
    raw = DispatchResult(channel="email", status=status, reason=reason, **IDS).model_dump(mode="json")
    del raw["outcome"]
    assert DispatchResult.model_validate(raw).outcome is kind
    assert from_legacy(status, reason) is kind


def test_a_new_result_says_its_kind_whatever_its_reason_text():
    result = DispatchResult(channel="email", status="failed", reason="smtp 550 5.7.1 policy",
                            outcome=OutcomeKind.refused, **IDS)
    assert result.outcome is OutcomeKind.refused and result.detail == "smtp 550 5.7.1 policy"
    assert DispatchResult.model_validate_json(result.model_dump_json()).outcome is OutcomeKind.refused


# -- staff figures: a bounce after delivery --------------------------------------------------------------

K = 5
T0 = datetime(2026, 12, 1, 12, tzinfo=timezone.utc)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def facts(volunteers: list[str], bounced: dict[str, datetime]) -> Facts:
    """Each volunteer relayed one email, delivered; those in ``bounced``
    bounced after (the delivery fact revised at that time)."""
    order = {v: at(i + 1) for i, v in enumerate(volunteers)}
    return Facts(
        suggestions=[(v, 1, order[v]) for v in volunteers],
        interests=[(v, "education") for v in volunteers],
        regions=[],
        relays=[(v, order[v], {"email": 1}) for v in volunteers],
        deliveries=[(v, "email", OutcomeKind.bounced, OutcomeKind.delivered, 1, bounced[v]) if v in bounced
                    else (v, "email", OutcomeKind.delivered, None, 1, order[v]) for v in volunteers])


def report(f: Facts, state: ShownState, cut: datetime):
    return staff_report("m1", ("education",), (), f, state, K, cut, ["email"])


def test_emails_delivered_then_bounced_move_from_reached_to_bounced_once_k_volunteers_bounced():
    vols = [f"v{i}" for i in range(7)]
    shown, state = report(facts(vols, {}), ShownState(), at(10))
    email = shown.reach.channels["email"]
    assert (email.reached.value, email.bounced.value) == (7, None)

    # fewer than k volunteers' emails bounced: the figures hold, reached included
    few = {v: at(20) for v in vols[:K - 1]}
    held, moved = report(facts(vols, few), state, at(30))
    assert moved is None
    assert held.reach.channels["email"].reached.value == 7

    # the k-th: bounced shows them all, and reached lost them
    enough = {v: at(20) for v in vols[:K]}
    shown, state = report(facts(vols, enough), state, at(40))
    email = shown.reach.channels["email"]
    assert (email.reached.value, email.bounced.value) == (2, 5)


@pytest.fixture
def in_feed(tmp_path):
    """Runs a function in a session of its own, as each handler does."""
    engine = make_engine(f"sqlite:///{tmp_path / 'feed.db'}")
    create_schema(engine)

    def run(fn):
        with Session(engine) as s:
            return fn(s)

    yield run
    engine.dispose()


def fact(kind: OutcomeKind) -> DeliveryFact:
    return DeliveryFact(job_id="job-1", message_id="m1", volunteer_id="vol-1", channel="email",
                        status="delivered" if kind is OutcomeKind.delivered else "failed", outcome=kind.value)


def test_feed_records_a_bounce_over_the_delivery_and_reads_it_as_it_stood_at_each_cut(in_feed):
    assert in_feed(lambda s: revise_delivery(s, fact(OutcomeKind.delivered)))
    before_bounce = utcnow()
    assert in_feed(lambda s: revise_delivery(s, fact(OutcomeKind.bounced)))
    assert not in_feed(lambda s: revise_delivery(s, fact(OutcomeKind.bounced)))  # redelivered: nothing changes
    assert not in_feed(lambda s: add_once(s, fact(OutcomeKind.delivered)))  # the result again: the bounce stays
    [(_, _, kind, previous, n, _)] = in_feed(lambda s: message_facts(s, "m1", utcnow()).deliveries)
    assert (kind, previous, n) == (OutcomeKind.bounced, OutcomeKind.delivered, 1)
    [(_, _, kind, previous, _, _)] = in_feed(lambda s: message_facts(s, "m1", before_bounce).deliveries)
    assert (kind, previous) == (OutcomeKind.delivered, None)
    # and the report's cache key sees the change, though no count moved
    assert in_feed(lambda s: facts_fingerprint(s, "m1", before_bounce) != facts_fingerprint(s, "m1", utcnow()))


def test_a_bounce_that_arrives_before_the_delivery_result_stays(in_feed):
    assert in_feed(lambda s: revise_delivery(s, fact(OutcomeKind.bounced)))
    assert not in_feed(lambda s: add_once(s, fact(OutcomeKind.delivered)))
    [(_, _, kind, previous, _, _)] = in_feed(lambda s: message_facts(s, "m1", utcnow()).deliveries)
    assert (kind, previous) == (OutcomeKind.bounced, None)


def test_facts_stored_before_the_kind_count_as_their_status_and_reason_meant(in_feed):
    in_feed(lambda s: add_once(s, *(
        DeliveryFact(job_id=f"job-{i}", message_id="m1", volunteer_id=f"vol-{i}", channel="email",
                     status="failed", reason=reason)
        for i, reason in enumerate(["smtp 550", "suppressed", "smtp 421"]))))
    kinds = sorted(kind for _, _, kind, _, _, _ in in_feed(lambda s: message_facts(s, "m1", utcnow()).deliveries))
    assert kinds == sorted([OutcomeKind.refused, OutcomeKind.suppressed, OutcomeKind.failed])
