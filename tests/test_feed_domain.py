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
    MessageDraft,
    Outcome,
    Role,
    State,
    TransitionError,
    cell,
    delivery_outcome,
    duplicate_terms,
    interest_problems,
    message_problems,
    next_state,
    reach_report,
    reach_timeline,
    role_allows,
    schedule_problems,
    suppress_group,
    taxonomy_digest,
)
from shared.events import TaxonomyTerm

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


def test_cells_under_k_are_suppressed_zero_included():
    assert cell(5, 5).model_dump() == {"value": 5, "suppressed": False}
    assert cell(4, 5).model_dump() == {"value": None, "suppressed": True}
    assert cell(0, 5).model_dump() == {"value": None, "suppressed": True}
    assert cell(1, 1).value == 1


def test_one_hidden_cell_of_a_shown_total_hides_a_second():
    # queued 20 (shown): reached 12 + opted_out 3 + bounced 5 → opted_out alone could be subtracted
    cells = suppress_group({"reached": 12, "opted_out": 3, "bounced": 5}, 5, total_shown=True)
    assert cells["opted_out"].suppressed and cells["bounced"].suppressed  # the smallest shown goes too
    assert cells["reached"].value == 12
    # with the total hidden, or two cells hidden already, nothing more is needed
    assert not suppress_group({"reached": 12, "opted_out": 3, "bounced": 5}, 5, total_shown=False)["bounced"].suppressed
    two = suppress_group({"reached": 12, "opted_out": 3, "bounced": 2}, 5, total_shown=True)
    assert not two["reached"].suppressed


def test_delivery_outcomes():
    assert delivery_outcome("delivered", None) is Outcome.reached
    assert delivery_outcome("failed", "suppressed") is Outcome.opted_out
    assert delivery_outcome("failed", "smtp 550") is Outcome.bounced
    assert delivery_outcome("failed", "withdrawn") is Outcome.dropped
    assert delivery_outcome("failed", "smtp 421") is Outcome.failed


def test_reach_report_never_lists_what_the_message_did_not_target():
    counts = {
        "volunteers_suggested": 7, "audience": 30, "relays": 6,
        "queued": {"email": 14},
        "results": [("email", "delivered", None, 9), ("email", "failed", "suppressed", 1),
                    ("email", "failed", "smtp 550", 4)],
        "by_interest": {"education": {"volunteers_suggested": 6, "audience": 25, "relays": 5, "reached": 8},
                        "seniors": {"volunteers_suggested": 1, "audience": 5, "relays": 1, "reached": 1}},
        "by_region": {"Bretagne": {"volunteers_suggested": 5, "audience": 20, "relays": 4, "reached": 6},
                      "Corse": {"volunteers_suggested": 2, "audience": 10, "relays": 2, "reached": 3}},
    }
    reach = reach_report("m1", ["education", "transport"], counts, 5, ["email", "bluesky"])
    data = reach.model_dump()
    # No region targeted: only the regions with k volunteers or more are rows.
    assert set(data["by_region"]) == {"Bretagne"}
    assert data["by_region"]["Bretagne"]["reached"] == {"value": 6, "suppressed": False}
    assert data["by_region"]["Bretagne"]["relays"]["suppressed"]
    # Targeted: exactly the targeted regions, whatever the facts hold.
    targeted = reach_report("m1", [], counts, 5, ["email"], regions=["Corse", "Occitanie"]).model_dump()
    assert set(targeted["by_region"]) == {"Corse", "Occitanie"}
    assert targeted["by_region"]["Corse"]["volunteers_suggested"]["suppressed"]
    assert targeted["by_region"]["Corse"]["audience"] == {"value": 10, "suppressed": False}
    assert all(c["suppressed"] for c in targeted["by_region"]["Occitanie"].values())
    assert data["volunteers_suggested"] == {"value": 7, "suppressed": False}
    assert set(data["by_interest"]) == {"education", "transport"}  # not "seniors": the message did not target it
    assert data["by_interest"]["transport"]["volunteers_suggested"] == {"value": None, "suppressed": True}
    email = data["channels"]["email"]
    assert email["queued"]["value"] == 14 and email["reached"]["value"] == 9
    assert all(email[o]["suppressed"] for o in ("opted_out", "bounced", "dropped", "failed"))
    assert all(c["suppressed"] for c in data["channels"]["bluesky"].values())

    def figures(node):
        if isinstance(node, dict):
            if set(node) == {"value", "suppressed"}:
                yield node
            else:
                for v in node.values():
                    yield from figures(v)

    for f in figures(data):
        assert f["value"] is None or f["value"] >= 5, f
        assert f["suppressed"] == (f["value"] is None)


def test_the_reach_timeline_moves_by_k_at_least_so_no_step_is_one_person():
    t0 = datetime(2026, 11, 24, 9, tzinfo=timezone.utc)
    delivered = [(t0 + timedelta(minutes=i), "email") for i in range(12)] + \
                [(t0 + timedelta(minutes=i), "bluesky") for i in range(3)]
    timeline = reach_timeline("m1", delivered, 5, ["email", "bluesky", "x"]).model_dump()
    assert [(p["at"], p["reached"]) for p in timeline["channels"]["email"]] == \
           [(t0 + timedelta(minutes=4), 5), (t0 + timedelta(minutes=9), 10)]
    assert timeline["channels"]["bluesky"] == [] and timeline["channels"]["x"] == []
    # a long campaign is drawn in at most max_points coarser steps
    many = [(t0 + timedelta(seconds=i), "email") for i in range(10_000)]
    points = reach_timeline("m1", many, 5, ["email"], max_points=60).channels["email"]
    assert len(points) <= 60 and points[-1].reached >= 10_000 - 167
    assert all(b.reached - a.reached >= 5 for a, b in zip(points, points[1:]))
