"""A use case's refusal as the page that caused it shows it: the same
answer the API gives (api/deps.py ANSWERS), read as sentences naming the field."""

from __future__ import annotations

from fastapi import HTTPException
from pydantic import ValidationError

from services.contacts.api.deps import ANSWERS
from services.contacts.errors import ContactsError
from shared.web.errors import answer
from shared.web.pages import problems

REFUSALS = (ContactsError, ValidationError, HTTPException)


def refusal(exc: ContactsError | ValidationError | HTTPException) -> tuple[int, list[str]]:
    """The status and the sentences of a refusal (a form's own check, a use case's error)."""
    if isinstance(exc, ContactsError):
        exc = answer(exc, ANSWERS)
    code = exc.status_code if isinstance(exc, HTTPException) else 422
    return code, problems(exc)
