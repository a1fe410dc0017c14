"""Feed's rules without a broker or a database: roles, the lifecycle, the
networks' limits, Markdown sanitizing, the schedule, the taxonomy, and the
k-anonymity of staff aggregates."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from services.feed import content
from services.feed.domain import (
    Action,
    Facts,
    MessageDraft,
    Role,
    ShownState,
    State,
    TransitionError,
    advance,
    contributions,
    duplicate_terms,
    interest_problems,
    message_problems,
    next_state,
    render,
    role_allows,
    schedule_problems,
    staff_report,
    taxonomy_digest,
)
from shared.events import TaxonomyTerm
from shared.outcomes import OutcomeKind, from_legacy

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
LIMITS = content.channel_limits()


# -- roles -----------------------------------------------------------------------------------------


def test_higher_roles_may_do_what_lower_ones_may():
    assert role_allows("admin", Role.publisher) and role_allows("admin", Role.editor)
    assert role_allows("publisher", Role.editor) and role_allows("publisher", Role.publisher)
    assert not role_allows("editor", Role.publisher)
    assert not role_allows("publisher", Role.admin)
    assert not role_allows("system", Role.editor) and not role_allows("volunteer", Role.editor)


# -- lifecycle ------------------------------------------------------------------------------------


def test_the_lifecycle_goes_draft_approved_published_withdrawn():
    assert next_state("draft", Action.approve) is State.approved
    assert next_state("approved", Action.publish) is State.published
    assert next_state("approved", Action.publish, embargoed=True) is State.scheduled
    assert next_state("scheduled", Action.release) is State.published
    assert next_state("published", Action.withdraw) is State.withdrawn
    assert next_state("published", Action.expire) is State.expired
    assert next_state("scheduled", Action.withdraw) is State.withdrawn  # cancelled before it went out
    assert next_state("approved", Action.edit) is State.draft  # an edit needs a new approval


@pytest.mark.parametrize("state, action", [
    ("draft", Action.publish), ("published", Action.publish), ("published", Action.approve),
    ("withdrawn", Action.withdraw), ("expired", Action.publish), ("published", Action.edit),
    ("scheduled", Action.edit), ("withdrawn", Action.approve), ("approved", Action.release),
])
def test_an_invalid_transition_says_from_which_state_to_which(state, action):
    with pytest.raises(TransitionError) as err:
        next_state(state, action)
    text = str(err.value)
    assert f"cannot {action} a message that is {state}" in text
    assert "→" in text


def test_publishing_a_draft_says_it_needs_approval_first():
    with pytest.raises(TransitionError, match="publish goes approved → published"):
        next_state("draft", Action.publish)


# -- short posts --------------------------------------------------------------------------------------


def test_bluesky_counts_graphemes_with_the_link():
    link = "https://campagne.example/" + "p" * 36  # 61 characters
    text = "a" * 250
    problems = content.short_post_problems(text, link, LIMITS)
    # 250 + a space + 61 = 312 graphemes; X and Mastodon count the link as 23
    assert problems == ["variants.short.text: 312 graphemes, Bluesky allows 300 (the text with its link)"]
    assert content.short_post(text, link) == f"{text} {link}"
    assert content.short_post(f"Voir {link}", link) == f"Voir {link}"  # quoted once, not twice


def test_a_family_emoji_is_one_grapheme_but_two_on_x():
    family = "👨\u200d👩\u200d👧\u200d👦"
    assert content.graphemes(family) == 1
    assert content.x_length(family) == 2
    assert content.graphemes("e\u0301") == 1  # é as e + combining accent


def test_x_weighs_cjk_twice_and_links_as_23():
    assert content.x_length("日本語") == 6
    assert content.x_length("Voir https://campagne.example/une/tres/longue/adresse") == 5 + 23
    problems = content.short_post_problems("議" * 150, None, LIMITS)
    assert problems == ["variants.short.text: 300 characters, X allows 280"]


def test_mastodon_counts_links_as_23_and_mentions_without_their_instance():
    assert content.mastodon_length("@alice@mastodon.social https://example.org/" + "x" * 80) == 7 + 23
    assert content.short_post_problems("m" * 501, None, content.channel_limits(x=10_000, bluesky=10_000)) == [
        "variants.short.text: 501 characters, Mastodon allows 500"]


def test_limits_are_configurable():
    tight = content.channel_limits(x=10, bluesky=8, mastodon=12)
    assert content.short_post_problems("Réunion du 12", None, tight) == [
        "variants.short.text: 13 characters, X allows 10",
        "variants.short.text: 13 graphemes, Bluesky allows 8",
        "variants.short.text: 13 characters, Mastodon allows 12",
    ]


# -- Markdown -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("source, found", [
    ("Hello <script>alert(1)</script>", "<script> element"),
    ("![x](x.png) <img src=x onerror=alert(1)>", "onerror= attribute"),
    ("[click](javascript:alert(1))", "javascript: link"),
    ("[click](JaVaScRiPt:alert(1))", "javascript: link"),
    ("[click](&#106;avascript:alert(1))", "javascript: link"),
    ('<a href="java&#x09;script:alert(1)">x</a>', "javascript: link"),
    ("<javascript:alert(1)>", "javascript: link"),
    ('<iframe src="https://evil.example"></iframe>', "<iframe> element"),
    ('<svg onload="alert(1)"></svg>', "<svg> element"),
    ("[x](data:text/html;base64,PHNjcmlwdD4=)", "data: link"),
    ('<div onmouseover="steal()">hover</div>', "onmouseover= attribute"),
])
def test_script_injection_is_found_and_never_rendered(source, found):
    assert found in content.active_content(source)
    html = content.render_markdown(source).lower()
    for tag in ("<script", "<iframe", "<svg"):
        assert tag not in html, f"{tag} survived in {html!r}"
    # what stays is text, never an attribute: no handler, no script or data URL in a tag
    assert not re.search(r"<[^>]*(\bon\w+\s*=|javascript:|data:)", html), html


def test_honest_markdown_renders_and_is_not_flagged():
    source = ("# Réunion\n\nLe **12 décembre**, <b>19 h</b>, [le programme](https://campagne.example/p).\n\n"
              "Écrire `<script>` dans du code est permis.\n\n| jour | lieu |\n|---|---|\n| 12/12 | salle |")
    assert content.active_content(source) == []
    html = content.render_markdown(source)
    assert "<h1>Réunion</h1>" in html and "<strong>12 décembre</strong>" in html and "<b>19 h</b>" in html
    assert '<a href="https://campagne.example/p" rel="noopener noreferrer nofollow">le programme</a>' in html
    assert "&lt;script&gt;" in html and "<table>" in html


# -- a whole message -------------------------------------------------------------------------------------


def draft(**fields) -> MessageDraft:
    base = {"title": "T", "body": "Un texte.", "interests": ["education"],
            "variants": {"email": {"subject": "S", "body": "B"}, "short": {"text": "Court."}}}
    return MessageDraft.model_validate({**base, **fields})


def test_every_problem_is_named_at_once():
    d = draft(body="<script>x</script>", interests=["education", "seniors", "local:lyon"],
              publish_at=NOW + timedelta(days=2), expires_at=NOW + timedelta(days=1),
              variants={"email": {"subject": "S", "body": "B"}, "short": {"text": "a" * 301}})
    problems = message_problems(d, taxonomy=frozenset({"education"}), limits=LIMITS, now=NOW)
    by_loc = {p.loc: p for p in problems}
    assert set(by_loc) == {("interests", 1), ("body",), ("variants", "short", "text"), ("expires_at",)}
    assert "'seniors'" in by_loc[("interests", 1)].msg
    assert "publish_at" in by_loc[("expires_at",)].msg and "expires_at" in by_loc[("expires_at",)].msg
    assert "Bluesky allows 300" in by_loc[("variants", "short", "text")].msg
    assert {p.kind for p in problems} == {"taxonomy", "injection", "limits", "schedule"}


def test_schedule_rules():
    assert schedule_problems(NOW, NOW + timedelta(hours=1), NOW) == []
    assert schedule_problems(None, None, NOW) == []
    assert schedule_problems(NOW + timedelta(hours=2), NOW + timedelta(hours=2), NOW)[0].loc == ("expires_at",)
    assert "already past" in schedule_problems(None, NOW - timedelta(seconds=1), NOW)[0].msg


def test_interests_follow_the_taxonomy_once_there_is_one():
    assert interest_problems(["anything"], None) == []  # no taxonomy yet: any word goes
    assert interest_problems(["local:villeurbanne"], frozenset()) == []  # always allowed
    assert interest_problems(["local:"], frozenset())[0].msg.startswith("interests: local: needs a commune")
    assert [p.loc for p in interest_problems(["education", "x"], frozenset({"education"}))] == [("interests", 1)]


def test_taxonomy_digest_is_the_content_in_any_order():
    a = TaxonomyTerm(name="education", label_fr="Éducation", label_en="Education")
    b = TaxonomyTerm(name="transport", label_fr="Transports", label_en="Transport")
    assert taxonomy_digest([a, b]) == taxonomy_digest([b, a])
    assert taxonomy_digest([a]) != taxonomy_digest([a, b])
    assert [p.loc for p in duplicate_terms([a, b, a])] == [("terms", 2, "name")]


# -- k-anonymity ------------------------------------------------------------------------------------------

T0 = datetime(2026, 11, 24, 9, tzinfo=timezone.utc)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


def facts(volunteers: dict[str, int], *, since: float = 0, interests: dict[str, str] | None = None,
          regions: dict[str, str] | None = None, outcomes: dict[str, tuple[str, str | None]] | None = None) -> Facts:
    """Each volunteer (in order, a minute apart after ``since``) suggested,
    relayed to ``n`` contacts by email, and every job delivered (or the
    outcome given)."""
    interests, regions, outcomes = interests or {}, regions or {}, outcomes or {}
    order = {v: at(since + i + 1) for i, v in enumerate(volunteers)}
    return Facts(
        suggestions=[(v, n, order[v]) for v, n in volunteers.items()],
        interests=[(v, interests.get(v, "education")) for v in volunteers],
        regions=[(v, regions[v]) for v in volunteers if v in regions],
        relays=[(v, order[v], {"email": n}) for v, n in volunteers.items()],
        deliveries=[(v, "email", from_legacy(*outcomes.get(v, ("delivered", None))), None, n, order[v])
                    for v, n in volunteers.items()])


def report(f: Facts, state: ShownState, cut: datetime, *, interests=("education",), regions=()):
    return staff_report("m1", interests, regions, f, state, 5, cut, ["email", "bluesky"])


def values(reach) -> dict:
    """Every figure of a report, by where it is (None: hidden)."""
    data = reach.model_dump()
    out = {}

    def walk(node, path):
        if set(node) == {"value", "suppressed"}:
            out[path] = node["value"]
        else:
            for key, child in node.items():
                if isinstance(child, dict):
                    walk(child, (*path, key))

    walk(data, ())
    return out


def test_a_cell_needs_k_volunteers_not_k_recipients():
    # three volunteers reaching 300 people: nothing is shown, zero included
    few = report(facts({"a": 100, "b": 120, "c": 80}), ShownState(), at(10))[0]
    assert all(v is None for v in values(few.reach).values())
    assert few.stats.emails_delivered.suppressed and few.stats.relays.suppressed
    five, state = report(facts({v: 2 for v in "abcde"}), ShownState(), at(10))
    assert (five.reach.relays.value, five.reach.channels["email"].reached.value, five.stats.emails_queued.value) == \
           (5, 10, 10)
    assert state is not None


def test_no_two_successive_reports_tell_one_volunteers_relay():
    """Eleven volunteers relay one after another, each to a different number
    of contacts, and a report is read after each: every figure any two
    reports show differs by at least k volunteers' relays, or not at all."""
    sizes = {f"v{i}": 3 + 7 * i for i in range(11)}
    state, seen = ShownState(), []
    for n in range(1, 12):
        relayed = dict(list(sizes.items())[:n])
        shown, moved = report(facts(relayed), state, at(n + 0.5))
        state = moved or state
        seen.append(values(shown.reach) | {("timeline", p.at.isoformat()): p.reached
                                           for p in shown.timeline.channels["email"]})
    one_relay = set(sizes.values())
    for a in seen:
        for b in seen:
            for where in a.keys() & b.keys():
                if a[where] is not None and b[where] is not None:
                    assert abs(a[where] - b[where]) not in one_relay, where
    assert [s[("relays",)] for s in seen] == [None] * 4 + [5] * 5 + [10] * 2  # it shows, and moves by k
    assert seen[-1][("channels", "email", "reached")] == sum(list(sizes.values())[:10])
    assert [p.reached for p in report(facts(sizes), state, at(12))[0].timeline.channels["email"]] == \
           [sum(list(sizes.values())[:5]), sum(list(sizes.values())[:10])]


def test_a_cell_changed_by_fewer_than_k_volunteers_holds_its_whole_group():
    first, state = report(facts({v: 4 for v in "abcde"}, outcomes={v: ("failed", "smtp 421") for v in "abcde"}),
                          ShownState(), at(10))
    assert first.reach.channels["email"].failed.value == 20
    # five more volunteers, delivered, and one more failure for one of the first five
    later = facts({v: 4 for v in "abcde"}, outcomes={v: ("failed", "smtp 421") for v in "abcde"})
    more = facts({v: 3 for v in "fghij"}, since=20)
    grown = Facts(suggestions=later.suggestions + more.suggestions, interests=later.interests + more.interests,
                  regions=[], relays=later.relays + more.relays,
                  deliveries=[*later.deliveries, *more.deliveries,
                              ("a", "email", OutcomeKind.failed_after_retries, None, 1, at(30))])
    held, moved = report(grown, state, at(40))
    email = held.reach.channels["email"]
    # failed moved by one volunteer: the channel's cells and the slices' reached stay as they were
    assert (email.failed.value, email.queued.value, email.reached.suppressed) == (20, 20, True)
    assert held.reach.relays.value == 10  # another group: it moves
    assert moved is not None


def test_a_slice_whose_complement_is_one_volunteer_is_hidden():
    # ten volunteers match education, one only transport: total minus education would be that one
    ten = {f"e{i}": 2 for i in range(10)} | {"t": 7}
    shown = report(facts(ten, interests={"t": "transport"}), ShownState(), at(20),
                   interests=("education", "transport"))[0].reach
    assert shown.relays.value == 11
    assert shown.by_interest["education"].relays.suppressed and shown.by_interest["transport"].relays.suppressed
    # untargeted regions: a region with one volunteer is no row, and the shown region may not be total minus one
    regions = {f"e{i}": "Bretagne" for i in range(10)} | {"t": "Corse"}
    reach = report(facts(ten, regions=regions), ShownState(), at(20))[0].reach
    assert set(reach.by_region) == set() and reach.volunteers_suggested.value == 11
    targeted = report(facts(ten, regions=regions), ShownState(), at(20), regions=("Corse", "Occitanie"))[0].reach
    assert set(targeted.by_region) == {"Corse", "Occitanie"}
    assert all(c["suppressed"] for row in targeted.model_dump()["by_region"].values() for c in row.values())


def test_one_hidden_outcome_takes_the_smallest_fresh_one_with_it():
    # queued by 12 volunteers: 9 delivered, 2 bounced (hidden), 1 still pending → bounced by subtraction
    vols = {f"v{i}": 2 for i in range(12)}
    outcomes = {f"v{i}": ("failed", "smtp 550") for i in (9, 10)} | {"v11": ("failed", "smtp 421")}
    reach = report(facts(vols, outcomes=outcomes), ShownState(), at(20))[0].reach
    email = reach.channels["email"]
    assert email.queued.value == 24 and email.reached.suppressed and email.bounced.suppressed
    # nor may the interest's reached (every channel's) stand in for the channel's
    assert reach.by_interest["education"].reached.suppressed and reach.by_interest["education"].relays.value == 12
    # a small channel beside a shown one hides the slices' reached for the same reason
    mixed = facts({f"v{i}": 2 for i in range(8)})
    mixed = Facts(mixed.suggestions, mixed.interests, [], mixed.relays,
                  mixed.deliveries + [("v0", "bluesky", "delivered", None, 1, at(1))])
    both = report(mixed, ShownState(), at(20))[0].reach
    assert both.channels["email"].reached.value == 16 and both.by_interest["education"].reached.suppressed


def test_the_state_survives_json_and_a_second_reader_shows_the_same():
    f = facts({v: 3 for v in "abcdefg"})
    first, state = report(f, ShownState(), at(10))
    again = ShownState.from_json(state.to_json())
    assert again == state
    # a second replica, a restart: the same figures, and nothing moves without k more volunteers
    assert advance(again, contributions(facts({v: 3 for v in "abcdefgh"})), 5, at(20)) is None
    assert render(again, "m1", ["education"], [], 5, ["email"]).reach == first.reach.model_copy(
        update={"channels": {"email": first.reach.channels["email"]}})


def test_a_slice_holding_another_may_not_differ_from_it_by_a_handful():
    # twenty volunteers: education holds fifteen, transport fourteen of those, seniors the other five;
    # each against the total is fine (5, 6, 15 apart), but education minus transport is v14 alone
    sizes = {f"v{i}": 2 + i for i in range(20)}
    f = facts(sizes)
    matched = [(f"v{i}", "education") for i in range(15)] + [(f"v{i}", "transport") for i in range(14)] + \
              [(f"v{i}", "seniors") for i in range(15, 20)]
    f = Facts(f.suggestions, matched, [], f.relays, f.deliveries)
    reach = report(f, ShownState(), at(30), interests=("education", "transport", "seniors"))[0].reach
    relays = {name: row.relays.value for name, row in reach.by_interest.items()}
    assert reach.relays.value == 20 and relays["seniors"] == 5
    assert (relays["education"] is None) != (relays["transport"] is None), relays  # one kept back, not both
