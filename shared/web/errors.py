"""Domain errors as HTTP answers, mapped once per app: a service lists
what each of its errors means (a table of error type → HTTPException) and
``install`` registers it, so routes raise domain errors and never map them
again. The answer then goes through whatever handles HTTPException in the
app (the JSON of the API, or a console's error page), so both doors agree."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException as StarletteHTTPException

# Each entry takes an instance of its own key: a pairing typing cannot say, hence Any
Answer = Callable[[Any], HTTPException]
Answers = Mapping[type[Exception], Answer]


def not_found(what: str) -> HTTPException:
    return HTTPException(404, detail=f"no such {what}")


def answer(exc: Exception, answers: Answers) -> HTTPException:
    """The HTTP answer to ``exc``: the entry of its nearest type in ``answers``
    (a page that shows a refusal in a form reads it from here too)."""
    for kind in type(exc).__mro__:
        if kind in answers:
            return answers[kind](exc)
    raise LookupError(f"no HTTP answer for {type(exc).__name__}") from exc


def install(app: FastAPI, answers: Answers) -> None:
    async def handle(request: Request, exc: Exception):
        http = answer(exc, answers)
        handler = app.exception_handlers.get(StarletteHTTPException, http_exception_handler)
        answered = handler(request, http)
        return await answered if inspect.isawaitable(answered) else answered

    for kind in answers:
        app.add_exception_handler(kind, handle)
