"""What a feed use case can refuse, in the domain's words. The adapters
decide what each means to their caller: the API maps them to HTTP answers
once (api/deps.py ANSWERS, installed by app.py), the console shows them on
its pages, the scheduler skips a message another request moved."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from services.feed.domain import Problem, TransitionError

__all__ = ["Invalid", "NotFound", "Refused", "TransitionError", "Unavailable"]


class NotFound(LookupError):
    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"no such {what}")


class Refused(ValueError):
    """The message breaks a rule at this moment (e.g. already expired)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.msg for p in problems))


class Invalid(ValueError):
    """A body the schema refuses once merged with what is stored (an edit):
    pydantic's own errors, kept as they are."""

    def __init__(self, errors: Sequence[Mapping[str, Any]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(e["msg"] for e in self.errors))


class Unavailable(RuntimeError):
    """NATS did not take the event: nothing was published. The text says
    what was kept and what the caller should do."""
