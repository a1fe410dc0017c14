"""Reading HTML form fields into what the API's models take."""

from __future__ import annotations

import re

from starlette.datastructures import FormData

_SEPARATORS = re.compile(r"[,;\n]")


def words(text: str | None) -> list[str]:
    """"education, transport" or one per line → ["education", "transport"]."""
    return [w.strip() for w in _SEPARATORS.split(text or "") if w.strip()]


def lines(text: str | None) -> list[str]:
    return [w.strip() for w in (text or "").splitlines() if w.strip()]


def blank_to_none(text: str | None) -> str | None:
    return text.strip() or None if text is not None else None


def field(form: FormData, name: str) -> str | None:
    """A text field of ``form``; a file sent in its place reads as absent."""
    value = form.get(name)
    return value if isinstance(value, str) else None
