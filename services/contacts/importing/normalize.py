"""Single values made canonical, so the same person imported twice (or from
two exports) compares equal, and a contact made of a file's raw values is
turned into a draft or into a reason the volunteer can fix."""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from email.utils import parseaddr
from urllib.parse import urlsplit

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from services.contacts.importing.model import ContactDraft, RawContact, RowOutcome
from shared.text import control_character

INTEREST_PATTERN = re.compile(r"[a-z0-9][a-z0-9_:-]{0,63}\Z")  # shared.events.InterestName
MAX_NAME = 200  # ContactIn.name's limit: a longer name would fail later, in the store
MAX_INTERESTS = 50  # ContactIn.interests' limit, for the same reason
_MAX_PHONE_INPUT = 64  # phonenumbers itself refuses past 250; anything this long is junk


# An import of 100 000 rows mostly repeats a few domains (gmail.com,
# orange.fr...) and email-validator spends half its time on the domain. A
# plain ASCII address whose domain it already accepted is accepted as it
# would be (same rules as its DOT_ATOM_TEXT and EMAIL_MAX_LENGTH; the
# property tests compare both paths).
_ASCII_LOCAL = re.compile(r"[a-z0-9_!#$%&'*+\-/=?^`{|}~]+(?:\.[a-z0-9_!#$%&'*+\-/=?^`{|}~]+)*\Z")
_accepted_domains: dict[str, None] = {}
_MAX_CACHED_DOMAINS = 10_000


def normalize_email(s: str) -> str:
    """Lowercase as a whole: providers treat the local part case-blindly, and
    the contact book deduplicates on this form."""
    candidate = s.strip()
    if not candidate:
        raise ValueError("empty address")
    lowered = candidate.lower()
    local, _, domain = lowered.rpartition("@")
    if (
        domain in _accepted_domains
        and lowered.isascii()
        and len(lowered) <= 254
        and len(local) <= 64
        and _ASCII_LOCAL.match(local)
    ):
        return lowered
    normalized = _validated(candidate, s)
    domain = normalized.rpartition("@")[2]
    if domain.isascii():
        if len(_accepted_domains) >= _MAX_CACHED_DOMAINS:
            _accepted_domains.clear()
        _accepted_domains[domain] = None
    return normalized


def _validated(candidate: str, s: str) -> str:
    # Lowercasing may change the text validation sees (e.g. 'İ' grows a
    # combining dot): iterate to a fixed point so the result is idempotent.
    for _ in range(3):
        try:
            result = validate_email(candidate, check_deliverability=False)
        except EmailNotValidError as e:
            raise ValueError(f"{s.strip()!r} is not a valid address ({e})") from None
        normalized = result.normalized.lower()
        if normalized == candidate:
            return normalized
        candidate = normalized
    raise ValueError(f"{s.strip()!r} is not a valid address (no stable lowercase form)")


def normalize_phone(s: str, default_region: str = "FR") -> str:
    text = s.strip()
    if len(text) > _MAX_PHONE_INPUT:
        raise ValueError(f"{text[:20]!r}… is too long for a phone number")
    try:
        number = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as e:
        raise ValueError(f"{text!r} is not a phone number ({e.args[0] if e.args else e})") from None
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason not in (
        phonenumbers.ValidationResult.IS_POSSIBLE,
        phonenumbers.ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
    ):
        why = {
            phonenumbers.ValidationResult.INVALID_COUNTRY_CODE: "unknown country code",
            phonenumbers.ValidationResult.TOO_SHORT: "too short",
            phonenumbers.ValidationResult.TOO_LONG: "too long",
            phonenumbers.ValidationResult.INVALID_LENGTH: "wrong length",
        }.get(reason, "impossible number")
        raise ValueError(f"{text!r} is not a possible phone number ({why})")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    # Leading zeros the E.164 form cannot carry ("000000" in Germany) make a
    # number that reads back as another one: refuse it rather than store a
    # number that changes each time it is normalized.
    if phonenumbers.format_number(phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.E164) != e164:
        raise ValueError(f"{text!r} is not a possible phone number (its leading zeros do not survive E.164)")
    return e164


def _ascii_fold(s: str) -> str:
    decomposed = unicodedata.normalize("NFKD", s.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@lru_cache(maxsize=4096)  # an import repeats the same few labels on every row
def normalize_interest(s: str) -> str | None:
    """Interest words must match shared.events.InterestName; 'Éducation
    populaire' and 'education-populaire' are the same interest."""
    text = re.sub(r"\s+", "-", _ascii_fold(s).strip())
    text = re.sub(r"[^a-z0-9_:-]", "", text)
    text = re.sub(r"-{2,}", "-", text)
    text = text.lstrip("_:-")[:64].rstrip("-")
    return text if INTEREST_PATTERN.match(text) else None


_LOCALE = re.compile(r"([A-Za-z]{2,3})((?:[-_][A-Za-z0-9]{2,8})*)\Z")


def normalize_locale(s: str) -> str | None:
    """BCP 47 casing ('fr-FR'); anything else (e.g. 'French') is dropped
    rather than guessed."""
    m = _LOCALE.match(s.strip())
    if not m:
        return None
    parts = [m.group(1).lower()]
    for sub in filter(None, re.split(r"[-_]", m.group(2))):
        parts.append(sub.upper() if len(sub) == 2 else sub.title() if len(sub) == 4 else sub.lower())
    return "-".join(parts)


# -- social handles -------------------------------------------------------------------

_MASTODON = re.compile(r"@?([A-Za-z0-9_]+(?:[.-][A-Za-z0-9_]+)*)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)\Z")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})+\Z")
_DID = re.compile(r"did:(plc|web):[a-z0-9._:-]{1,200}\Z")
_X = re.compile(r"@?([A-Za-z0-9_]{1,15})\Z")
# Hosts whose profile URLs look like a fediverse '/@user' but are not.
_NOT_FEDIVERSE = {"medium.com", "youtube.com", "tiktok.com", "threads.net", "threads.com"}


def normalize_handle(network: str, s: str) -> tuple[str, str] | None:
    """(network, handle) in the form each network's users write it, or None
    if the text does not look like a handle of that network (a handle is a
    bonus, never a reason to reject a contact)."""
    text = s.strip()
    if text.lower().startswith(("http://", "https://")):
        found = handle_from_url(text)
        return found if found and found[0] == network else None
    if network == "mastodon":
        m = _MASTODON.match(text)
        return ("mastodon", f"@{m.group(1)}@{m.group(2).lower()}") if m else None
    if network == "bluesky":
        text = text.removeprefix("@").lower()
        return ("bluesky", text) if _HOSTNAME.match(text) or _DID.match(text) else None
    if network == "x":
        m = _X.match(text)
        return ("x", f"@{m.group(1)}") if m else None
    return None


def handle_from_url(url: str) -> tuple[str, str] | None:
    try:
        parts = urlsplit(url.strip())
        host = (parts.hostname or "").lower().removeprefix("www.")
    except ValueError:
        return None
    segments = [p for p in parts.path.split("/") if p]
    if not host or not segments:
        return None
    if host == "bsky.app" and len(segments) >= 2 and segments[0] == "profile":
        return normalize_handle("bluesky", segments[1])
    if host in ("x.com", "twitter.com", "mobile.twitter.com") and len(segments) == 1:
        return normalize_handle("x", segments[0])
    if host not in _NOT_FEDIVERSE and len(segments) == 1 and segments[0].startswith("@"):
        return normalize_handle("mastodon", f"{segments[0]}@{host}")
    return None


# -- a whole contact ------------------------------------------------------------------


def _email_candidate(s: str) -> str:
    text = s.strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    if "<" in text and text.rstrip().endswith(">"):
        # 'Ana Dupont <ana@example.org>', as copied from a mail client
        text = parseaddr(text)[1] or text
    return text


# Google's own groups, on every contact: they say nothing of the person.
_SYSTEM_LABELS = {"mycontacts", "my-contacts", "starred"}


def _unique(values):
    return tuple(dict.fromkeys(values))


def contact_outcome(row: int, raw: str, c: RawContact, default_region: str = "FR") -> RowOutcome:
    """Invalid optional values are dropped; only the lack of any way to reach
    the person, or a name that cannot go in a mail header, rejects a row,
    with the reason naming the bad field."""
    emails: list[str] = []
    phones: list[str] = []
    problems: list[str] = []
    for value in c.emails:
        if value := value.strip():
            try:
                emails.append(normalize_email(_email_candidate(value)))
            except ValueError as e:
                problems.append(f"email: {e}")
    for value in c.phones:
        if value := value.strip():
            try:
                phones.append(normalize_phone(value, default_region))
            except ValueError as e:
                problems.append(f"phone: {e}")
    if not emails and not phones:
        error = "; ".join(problems) or "no usable channel: the row has no valid email or phone"
        return RowOutcome(row=row, draft=None, error=error, raw=raw)

    handles = [normalize_handle(net, v) for net, v in c.handles if v.strip()]
    handles += [handle_from_url(u) for u in c.urls if u.strip()]
    interests = []
    for label in c.interests:
        interest = normalize_interest(label.strip().removeprefix("* "))
        if interest and interest not in _SYSTEM_LABELS:
            interests.append(interest)
    name = c.display_name.strip() or " ".join(p.strip() for p in c.name_parts if p.strip())
    if not name:  # 'Ana Dupont <ana@example.org>' names itself
        name = next((n for n in (parseaddr(v)[0].strip() for v in c.emails if "<" in v) if n), "")
    if not name:
        name = emails[0].rpartition("@")[0] if emails else phones[0]
    if (bad := control_character(name)) is not None:
        # The name becomes the To: header's display name. A line break or a
        # tab inside it (a multi-line cell, an escaped vCard \n) is refused
        # like the API refuses it, not mended: the volunteer sees the row's
        # raw text and decides what the name is.
        return RowOutcome(row=row, draft=None, raw=raw,
                          error=f"name: must not contain a control character (found {bad}, e.g. a line break)")
    draft = ContactDraft(
        display_name=name[:MAX_NAME],
        emails=_unique(emails),
        phones=_unique(phones),
        handles=_unique(h for h in handles if h),
        locale=normalize_locale(c.locale) if c.locale else None,
        commune=c.commune.strip() or None,
        region=c.region.strip() or None,
        interests=_unique(interests)[:MAX_INTERESTS],
        notes=re.sub(r"\r\n?", "\n", c.notes).strip() or None,
    )
    return RowOutcome(row=row, draft=draft, error=None, raw=raw)
