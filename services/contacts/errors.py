"""What a contacts use case can refuse, in the service's words. The doors
decide what each means to their caller: the API maps them to HTTP answers
once (api/deps.py ANSWERS, installed by app.py), the volunteer's pages show
them in the form that caused them, the handlers let the bus retry or drop."""

from __future__ import annotations


class ContactsError(Exception):
    """Every refusal below: what a page catches to show it."""


class NotFound(ContactsError, LookupError):
    def __init__(self, what: str) -> None:
        self.what = what
        super().__init__(f"no such {what}")


class Conflict(ContactsError):
    """The book's state forbids it now (already invited, address taken).
    ``detail`` is a sentence, or FastAPI-shaped entries naming a field."""

    def __init__(self, detail: str | list[dict]) -> None:
        self.detail = detail
        super().__init__(str(detail))

    @classmethod
    def on(cls, field: str, msg: str) -> Conflict:
        return cls([{"loc": ["body", field], "msg": msg, "type": "conflict"}])


class Invalid(ContactsError, ValueError):
    """A rule a schema cannot express: FastAPI-shaped entries (loc, msg, type)."""

    def __init__(self, detail: list[dict]) -> None:
        self.detail = detail
        super().__init__("; ".join(str(d.get("msg")) for d in detail))

    @classmethod
    def field(cls, where: str, field: str, msg: str) -> Invalid:
        return cls([{"loc": [where, field], "msg": msg, "type": "value_error"}])


class BookGone(ContactsError):
    """The volunteer erased their book: its key is gone."""

    def __init__(self) -> None:
        super().__init__("this book was erased")


class CodeRefused(ContactsError):
    """An invitation or sign-in code that is unknown, used or expired."""


class TooLarge(ContactsError):
    """An upload over the service's limit."""
