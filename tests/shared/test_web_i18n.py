"""Every string the thin clients show exists in French and in English:
the same keys, the same {placeholders}, and every key the templates and
routes ask for — the literal ones and the families built from a value
(a consent state, a channel, a message state…), enumerated from the code
that produces those values."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from services.contacts.domain import Consent, Skip
from services.contacts.networks import CREDENTIALS
from services.contacts.relay.share_links import SHARE_NETWORKS
from services.feed.content import channel_limits
from services.feed.domain import Outcome, Role, State
from shared.events import Channel
from shared.outcomes import VolunteerLine
from shared.web.i18n import LANGUAGES, SHARED, Catalog
from tests.support.paths import ROOT

SITES = {"contacts": ROOT / "services/contacts/web", "feed": ROOT / "services/feed/web"}
LITERAL = re.compile(r"""\bt\(\s*['"]([a-z0-9_.]+)['"]\s*[,)]""")
FAMILY = re.compile(r"""\bt\(\s*['"]([a-z0-9_.]+\.)['"]\s*~""")

# What each family of keys is built from: the values the code can produce.
FAMILIES = {
    "contacts": {
        "consent.": [c.value for c in Consent],
        "network.": [c.value for c in Channel] + list(SHARE_NETWORKS),
        "relay.status.": ["sending", "done", "queued", "posted", "failed", "link", "pending"],
        "skip.": [s.value for s in Skip],
        "history.": sorted([line.value for line in VolunteerLine] + ["unreachable"]),
        "import.outcome.": ["imported", "merged", "unchanged", "rejected"],
        "networks.field.": sorted({f for model in CREDENTIALS.values() for f in model.model_fields}),
        "networks.problem.": ["token_revoked"],
        "networks.choice.": ["starttls", "tls", "none"],
        "layout.lang.": list(LANGUAGES),
    },
    "feed": {
        "state.": [s.value for s in State],
        "role.": [r.value for r in Role],
        "message.": ["approve", "publish", "withdraw"],
        "priority.": ["0", "1", "2", "3"],
        "unit.": sorted({limit.unit for limit in channel_limits()}),
        "reach.": ["queued", *(o.value for o in Outcome if o.value != "dropped")],
        "layout.lang.": list(LANGUAGES),
    },
}


def sources(folder: Path) -> str:
    files = [*folder.rglob("*.html"), *folder.rglob("*.py"), *(SHARED.parent / "templates").rglob("*.html")]
    return "\n".join(p.read_text(encoding="utf-8") for p in files)


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("site", SITES)
def test_french_and_english_have_the_same_keys_and_placeholders(site):
    strings = Catalog(SITES[site] / "i18n").strings
    fr, en = strings["fr"], strings["en"]
    assert fr.keys() == en.keys(), sorted(fr.keys() ^ en.keys())
    for key in fr:
        assert fr[key].strip() and en[key].strip(), f"{key} is empty"
        assert placeholders(fr[key]) == placeholders(en[key]), key


@pytest.mark.parametrize("site", SITES)
def test_every_key_the_pages_ask_for_exists(site):
    strings = Catalog(SITES[site] / "i18n").strings
    code = sources(SITES[site])
    asked = set(LITERAL.findall(code))
    assert len(asked) > 30, "the key finder finds the keys"
    for prefix in FAMILY.findall(code):
        assert prefix in FAMILIES[site], f"a new family of keys, {prefix!r}: list its values here"
        asked |= {prefix + value for value in FAMILIES[site][prefix]}
    for lang in LANGUAGES:
        missing = sorted(k for k in asked if k not in strings[lang])
        assert not missing, f"{site} {lang}: {missing}"


def test_a_missing_key_shows_the_key_instead_of_breaking_the_page():
    t = Catalog(SITES["contacts"] / "i18n").translator("en")
    assert t("no.such.key") == "no.such.key"
    assert t("inbox.fits", n=12) == "Fits 12 of your contacts:"
