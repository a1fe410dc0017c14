"""Reading HTML form fields into what the API's models take."""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[,;\n]")


def words(text: str | None) -> list[str]:
    """"education, transport" or one per line → ["education", "transport"]."""
    return [w.strip() for w in _SEPARATORS.split(text or "") if w.strip()]


def lines(text: str | None) -> list[str]:
    return [w.strip() for w in (text or "").splitlines() if w.strip()]


def blank_to_none(text: str | None) -> str | None:
    return text.strip() or None if text is not None else None
