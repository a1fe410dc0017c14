"""The personal part of an email: the text and HTML bodies, rendered per
contact from the campaign's templates. No I/O.

Templates run in Jinja's sandbox (a template edited by campaign staff must
not reach Python internals), the HTML one with autoescape: a contact's name
or a volunteer's note is data, never markup. The message body itself is
the campaign's Markdown, rendered and sanitized (nh3) before it goes in."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import nh3
from jinja2 import StrictUndefined, Template
from jinja2.sandbox import SandboxedEnvironment
from markdown_it import MarkdownIt
from markupsafe import Markup, escape

from shared.events import OpenedEmailJob

TEXT_TEMPLATE = """\
Bonjour{% if first_name %} {{ first_name }}{% endif %},
{% if note %}
{{ note }}
{% endif %}
{{ body_text }}

— {{ sender_name }}

--
Ne plus recevoir ces messages / Unsubscribe: {{ unsubscribe_url }}
"""

HTML_TEMPLATE = """\
<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>{{ subject }}</title></head>
<body style="font-family:system-ui,sans-serif;max-width:40rem">
<p>Bonjour{% if first_name %} {{ first_name }}{% endif %},</p>
{% if note %}<p style="white-space:pre-line">{{ note }}</p>{% endif %}
{{ body_html }}
<p>— {{ sender_name }}</p>
<hr><p style="font-size:small"><a href="{{ unsubscribe_url }}">Ne plus recevoir ces messages / Unsubscribe</a></p>
</body></html>
"""


def first_name(full_name: str) -> str:
    return full_name.strip().split()[0] if full_name.strip() else ""


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "linkify": False})


@lru_cache(maxsize=256)
def body_html(markdown: str) -> Markup:
    """The campaign's Markdown as safe HTML. Cached: a relay sends the same
    body to every contact, only the greeting and note differ. A lone
    surrogate (JSON can carry one) becomes a "?": nh3 cannot take it, and
    a job that raises here would be redelivered forever."""
    markdown = markdown.encode(errors="replace").decode()
    return Markup(nh3.clean(_markdown().render(markdown)))


# The per-contact values; everything else in a job is the same for a whole
# relay. A frame is rendered with these markers in their place, once per
# relay, and each contact's values are then put in (escaped for HTML).
PERSONAL = ("first_name", "note", "unsubscribe_url")
_MARK = "\x1e{}\x1e"
_MARKS = re.compile("\x1e(" + "|".join(PERSONAL) + ")\x1e")
PROBE = {"first_name": "Zoé <b>&", "note": "une note\n& <i>deux</i> \"lignes\"",
         "unsubscribe_url": "https://campagne.example/u/1?a=1&b='2'"}


@dataclass(frozen=True)
class Templates:
    text: str = TEXT_TEMPLATE
    html: str = HTML_TEMPLATE

    # set once by __post_init__ (the dataclass is frozen)
    _text: Template = field(init=False, repr=False, compare=False)
    _html: Template = field(init=False, repr=False, compare=False)
    _frames: dict[tuple, tuple[list[str], list[str]]] = field(init=False, repr=False, compare=False)
    _framed: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Parse once; a template with a syntax error fails at start, not per job.
        text_env = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
        html_env = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined)
        object.__setattr__(self, "_text", text_env.from_string(self.text))
        object.__setattr__(self, "_html", html_env.from_string(self.html))
        object.__setattr__(self, "_frames", {})
        # Frames are exact only if the templates print the personal values
        # as they are ({{ x }}, {% if x %}): checked once against a direct
        # render of awkward values; a template that filters them renders
        # per contact.
        probe = dict(sender_name="A", subject="S", body_text="B", **PROBE)
        try:
            framed = self._fill(self._frame(probe), probe) == self._direct(probe)
        except Exception:  # e.g. a template the sandbox refuses: it fails per job, as it would without frames
            framed = False
        self._frames.clear()  # the probe's
        object.__setattr__(self, "_framed", framed)

    def _values(self, job: OpenedEmailJob) -> dict:
        return dict(first_name=first_name(job.recipient_name), sender_name=job.sender_name,
                    note=(job.note or "").strip(), subject=job.subject, body_text=job.body_text,
                    unsubscribe_url=job.unsubscribe_url)

    def _direct(self, values: dict) -> tuple[str, str]:
        return self._text.render(**values), self._html.render(**values, body_html=body_html(values["body_text"]))

    def _frame(self, values: dict) -> tuple[list[str], list[str]]:
        """The relay's text and HTML split at the personal values: even
        items are fixed text, odd items name the value that goes there."""
        key = (values["sender_name"], values["subject"], values["body_text"],
               bool(values["first_name"]), bool(values["note"]))
        frame = self._frames.get(key)
        if frame is None:
            # a marker is falsy nowhere: stand-ins keep each {% if %} as the contact's values take it
            marked = {**values, **{name: _MARK.format(name) if values[name] else "" for name in PERSONAL}}
            text, html = self._direct(marked)
            frame = (_MARKS.split(text), _MARKS.split(html))
            if len(self._frames) >= 256:  # a few relays at a time: no need to keep more
                self._frames.clear()
            self._frames[key] = frame
        return frame

    @staticmethod
    def _fill(frame: tuple[list[str], list[str]], values: dict) -> tuple[str, str]:
        text, html = frame
        # one pass: a value that contains a marker is not filled again
        return ("".join(values[p] if i % 2 else p for i, p in enumerate(text)),
                "".join(escape(values[p]) if i % 2 else p for i, p in enumerate(html)))

    def render(self, job: OpenedEmailJob) -> tuple[str, str]:
        """(text, html) for one contact."""
        values = self._values(job)
        if not self._framed:
            return self._direct(values)
        return self._fill(self._frame(values), values)
