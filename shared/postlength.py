"""How the networks measure a short post, shared by feed (which refuses a
variant that does not fit) and the social dispatchers (which fit a post to
an instance's own limit, and find the links a Bluesky post must mark).
Pure functions: no I/O."""

from __future__ import annotations

import unicodedata

import regex

_URL = regex.compile(r"https?://[^\s<>\"]+", regex.IGNORECASE)
_MENTION = regex.compile(r"(?<![\w@])@(\w{1,30})@[\w.-]+\w")
_GRAPHEME = regex.compile(r"\X")
_EMOJI = regex.compile(r"\p{Extended_Pictographic}|\p{Regional_Indicator}")
URL_WEIGHT = 23  # X (t.co) and Mastodon count every link as 23 characters

# twitter-text v3: these code points weigh 1, everything else 2 (CJK …),
# an emoji (even a ZWJ sequence) 2.
_X_LIGHT_RANGES = ((0x0000, 0x10FF), (0x2000, 0x200D), (0x2010, 0x201F), (0x2032, 0x2037))


def short_post(text: str, link: str | None) -> str:
    """The post as it goes out: the text, then its link unless the text
    already quotes it."""
    text = text.strip()
    if link and link not in text:
        return f"{text} {link}"
    return text


def graphemes(text: str) -> int:
    """User-perceived characters (extended grapheme clusters, UAX #29)."""
    return len(_GRAPHEME.findall(unicodedata.normalize("NFC", text)))


def _x_weight(cluster: str) -> int:
    if _EMOJI.search(cluster):
        return 2
    return sum(1 if any(lo <= ord(c) <= hi for lo, hi in _X_LIGHT_RANGES) else 2 for c in cluster)


def x_length(text: str) -> int:
    """X's weighted length: a link is 23, an emoji or a CJK character 2."""
    text = unicodedata.normalize("NFC", text)
    links = len(_URL.findall(text))
    rest = _URL.sub("", text)
    return links * URL_WEIGHT + sum(_x_weight(c) for c in _GRAPHEME.findall(rest))


def mastodon_length(text: str) -> int:
    """Mastodon's count: graphemes, a link is 23, ``@user@instance`` counts
    as ``@user``."""
    text = _MENTION.sub(r"@\1", unicodedata.normalize("NFC", text))
    links = len(_URL.findall(text))
    return links * URL_WEIGHT + graphemes(_URL.sub("", text))


def links_in(text: str) -> list[tuple[int, int, str]]:
    """Each link of ``text`` as (start, end, url), character offsets."""
    return [(m.start(), m.end(), m.group()) for m in _URL.finditer(text)]


def clip_graphemes(text: str, keep: int) -> str:
    """The first ``keep`` graphemes of ``text``: never half an emoji or an
    accent torn from its letter."""
    return "".join(_GRAPHEME.findall(text)[:max(0, keep)])
