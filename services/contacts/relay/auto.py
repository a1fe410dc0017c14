"""Auto-relay's rules: a volunteer may let contacts relay, without their
click, the suggestions that fit interests they chose. Relaying is the
click itself, made when the suggestion arrives
(usecases/receive_suggestion.py): the same rules, the same relay id per
suggestion, so a redelivered suggestion relays nothing twice."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter

from services.contacts.store import Volunteer

AUTO_RELAYS = Counter(
    "maillage_contacts_auto_relays_total",
    "Suggestions relayed by a volunteer's auto-relay choice, or why not.",
    ["outcome"],  # relayed, already, not_live, no_suggestion, erased
)


def effective(vol: Volunteer) -> set[str]:
    """The auto-relay interests that are still shared: sharing an interest
    no more stops its auto-relay too, whatever was stored."""
    chosen = set(vol.auto_relay_interests or ())
    return chosen if vol.shared_interests is None else chosen & set(vol.shared_interests)


def wanted(vol: Volunteer, matched_interests: Iterable[str]) -> bool:
    return bool(effective(vol) & set(matched_interests))


def choice_problem(chosen: set[str], shared: set[str] | None, taxonomy: set[str]) -> str | None:
    """Why a volunteer's auto-relay choice is refused, if it is: only the
    campaign's interests (suggestions carry no other; before the campaign
    sets a taxonomy, any interest goes, as for its messages), and only
    shared ones (an unshared interest brings no suggestion to relay)."""
    unknown = sorted(chosen - taxonomy) if taxonomy else []
    if unknown:
        return f"not in the campaign's interests: {', '.join(unknown)}"
    unshared = sorted(chosen - shared) if shared is not None else []
    if unshared:
        return f"not among the interests you share: {', '.join(unshared)}"
    return None
