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

from dataclasses import dataclass
from html.parser import HTMLParser

import nh3
import regex
from markdown_it import MarkdownIt

from shared.postlength import graphemes, mastodon_length, short_post, x_length

# -- Markdown ------------------------------------------------------------------------------

_markdown = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])

# The same parser, accepting every link: used only to *find* what a source
# tries to smuggle (markdown-it alone would quietly drop a javascript: link).
class _EveryLink(MarkdownIt):
    def validateLink(self, url: str) -> bool:
        return True


_permissive = _EveryLink("commonmark", {"html": True}).enable(["table", "strikethrough"])

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


# -- short posts and the networks' limits (measured in shared.postlength) ---------------------


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
