"""Text that may end up in a mail header (a name, a display name, a subject,
an address): refused at input when it holds a control character, so a 422
names the field instead of the value travelling on to a header writer.

The header writers refuse raw CR/LF on their own as well (defence in
depth): this type is where the volunteer or the staff member learns which
field to fix."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

# C0 controls (CR, LF, TAB, NUL…), DEL, C1 controls (NEL included), and the
# Unicode line and paragraph separators some mail software reads as line
# breaks: a regex character-class body, so the mail writer refuses the very
# same set (services/dispatch/email/domain/message.py).
CONTROL_CLASS = r"\x00-\x1f\x7f-\x9f\u2028\u2029"
_CONTROL = re.compile(rf"[{CONTROL_CLASS}]")


def control_character(value: str) -> str | None:
    """The first control character of ``value`` spelt out (``U+000D``), or None."""
    found = _CONTROL.search(value)
    return None if found is None else f"U+{ord(found.group()):04X}"


def _no_control(value: str) -> str:
    if (bad := control_character(value)) is not None:
        raise ValueError(f"must not contain a control character (found {bad}, e.g. a line break)")
    return value


# Use on every model field whose value can reach a mail header.
HeaderText = Annotated[str, AfterValidator(_no_control)]
