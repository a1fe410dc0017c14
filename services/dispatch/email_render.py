"""The personal part of an email: the text and HTML bodies, rendered per
contact from the campaign's templates. No I/O.

Templates run in Jinja's sandbox (a template edited by campaign staff must
not reach Python internals), the HTML one with autoescape: a contact's name
or a volunteer's note is data, never markup. The message body itself is
the campaign's Markdown, rendered and sanitized (nh3) before it goes in."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import nh3
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from markdown_it import MarkdownIt
from markupsafe import Markup

from shared.events import EmailJob

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
    body to every contact, only the greeting and note differ."""
    return Markup(nh3.clean(_markdown().render(markdown)))


@dataclass(frozen=True)
class Templates:
    text: str = TEXT_TEMPLATE
    html: str = HTML_TEMPLATE

    def __post_init__(self) -> None:
        # Parse once; a template with a syntax error fails at start, not per job.
        text_env = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined, keep_trailing_newline=True)
        html_env = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined)
        object.__setattr__(self, "_text", text_env.from_string(self.text))
        object.__setattr__(self, "_html", html_env.from_string(self.html))

    def render(self, job: EmailJob) -> tuple[str, str]:
        """(text, html) for one contact."""
        values = dict(
            first_name=first_name(job.recipient_name),
            sender_name=job.sender_name,
            note=(job.note or "").strip(),
            subject=job.subject,
            body_text=job.body_text,
            unsubscribe_url=job.unsubscribe_url,
        )
        text = self._text.render(**values)
        html = self._html.render(**values, body_html=body_html(job.body_text))
        return text, html
