"""French and English: one JSON catalogue per language and service (plus
the shared layout's), the language chosen by a cookie the volunteer sets,
else by the browser's Accept-Language."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import structlog
from fastapi import Request

log = structlog.get_logger(__name__)

LANGUAGES = ("fr", "en")
DEFAULT = "fr"  # a French campaign first
LANG_COOKIE = "maillage_lang"
SHARED = Path(__file__).parent / "i18n"

Translate = Callable[..., str]


def load(folder: Path) -> dict[str, dict[str, str]]:
    return {lang: json.loads((folder / f"{lang}.json").read_text(encoding="utf-8")) for lang in LANGUAGES}


def preferred(accept_language: str) -> str:
    """The first of our languages the browser asks for, by its q-values."""
    ranked = []
    for position, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, position, tag.strip().lower().split("-")[0]))
    for _, _, lang in sorted(ranked):
        if lang in LANGUAGES:
            return lang
    return DEFAULT


class Catalog:
    """A service's strings merged over the shared layout's."""

    def __init__(self, folder: Path) -> None:
        shared, own = load(SHARED), load(folder)
        self.strings = {lang: {**shared[lang], **own[lang]} for lang in LANGUAGES}

    def language(self, request: Request) -> str:
        chosen = request.cookies.get(LANG_COOKIE)
        return chosen if chosen in LANGUAGES else preferred(request.headers.get("accept-language", ""))

    def translator(self, lang: str) -> Translate:
        strings = self.strings[lang]

        def t(key: str, **values: object) -> str:
            text = strings.get(key)
            if text is None:  # a test keeps this from happening; a page still renders
                log.warning("i18n.missing", key=key, lang=lang)
                return key
            return text.format(**values) if values else text

        return t
