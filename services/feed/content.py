"""What a message says, free of I/O: its Markdown body rendered to safe
HTML, and its short post measured the way each network measures it.

Markdown is rendered by markdown-it-py (CommonMark, tables, strikethrough)
and the HTML it gives is always passed through nh3 (the Ammonia sanitizer):
whatever the source holds, no script reaches a reader. Because the Markdown
source itself travels too (in ``MessagePublished`` and to every volunteer
client), a source that *tries* to inject script is refused outright, with
the construct named, instead of being silently stored.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from html.parser import HTMLParser

import nh3
import regex
from markdown_it import MarkdownIt

# -- Markdown ------------------------------------------------------------------------------

_markdown = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])

# The same parser, accepting every link: used only to *find* what a source
# tries to smuggle (markdown-it alone would quietly drop a javascript: link).
_permissive = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
_permissive.validateLink = lambda _url: True

URL_SCHEMES = frozenset({"http", "https", "mailto"})
LINK_REL = "noopener noreferrer nofollow"

ACTIVE_TAGS = frozenset({
    "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "form", "input",
    "button", "textarea", "select", "link", "meta", "base", "svg", "math", "template", "noscript",
})
URL_ATTRIBUTES = frozenset({"href", "src", "action", "formaction", "xlink:href", "data", "poster",
                            "background", "cite", "srcset", "lowsrc", "dynsrc"})
ACTIVE_SCHEMES = ("javascript:", "vbscript:", "data:", "livescript:")
_IGNORED_IN_SCHEME = regex.compile(r"[\s\x00-\x1f]+")


def render_markdown(source: str) -> str:
    """Markdown → HTML safe to show anywhere: only harmless tags and
    attributes, links limited to http(s)/mailto and opened with
    ``rel="noopener noreferrer nofollow"``."""
    return nh3.clean(_markdown.render(source), url_schemes=set(URL_SCHEMES), link_rel=LINK_REL)


class _ActiveContentFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def _note(self, what: str) -> None:
        if what not in self.found:
            self.found.append(what)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ACTIVE_TAGS:
            self._note(f"<{tag}> element")
        for name, value in attrs:
            if name.startswith("on"):
                self._note(f"{name}= attribute")
            elif name == "srcdoc":
                self._note("srcdoc= attribute")
            elif name in URL_ATTRIBUTES and value:
                # Browsers ignore whitespace and control characters in a
                # scheme ("java\tscript:"); entities are already decoded.
                compact = _IGNORED_IN_SCHEME.sub("", value).lower()
                for scheme in ACTIVE_SCHEMES:
                    if compact.startswith(scheme):
                        self._note(f"{scheme} link")

    handle_startendtag = handle_starttag


def active_content(source: str) -> list[str]:
    """The script-bearing constructs a Markdown source holds ("<script>
    element", "onerror= attribute", "javascript: link"…), in order of
    appearance; empty for an honest text."""
    finder = _ActiveContentFinder()
    finder.feed(_permissive.render(source))
    finder.close()
    return finder.found


# -- short posts and the networks' limits ---------------------------------------------------

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


@dataclass(frozen=True)
class ChannelLimit:
    network: str
    limit: int
    unit: str  # "characters" or "graphemes", as the error says it
    measure: object  # Callable[[str], int]

    def excess(self, post: str) -> str | None:
        """None if ``post`` fits, else the sentence saying by how much."""
        n = self.measure(post)  # type: ignore[operator]
        if n <= self.limit:
            return None
        return f"{n} {self.unit}, {self.network} allows {self.limit}"


def channel_limits(x: int = 280, bluesky: int = 300, mastodon: int = 500) -> tuple[ChannelLimit, ...]:
    return (
        ChannelLimit("X", x, "characters", x_length),
        ChannelLimit("Bluesky", bluesky, "graphemes", graphemes),
        ChannelLimit("Mastodon", mastodon, "characters", mastodon_length),
    )


def short_post_problems(text: str, link: str | None, limits: tuple[ChannelLimit, ...]) -> list[str]:
    """One sentence per network the post (text + link) does not fit."""
    post = short_post(text, link)
    return [f"variants.short.text: {sentence}" + ("" if not link or link in text else " (the text with its link)")
            for limit in limits if (sentence := limit.excess(post))]
