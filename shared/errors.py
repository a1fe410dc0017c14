"""Errors shaped like FastAPI's own validation errors, for rules a schema
cannot express: clients read one format, naming where and why."""

from __future__ import annotations

from fastapi import HTTPException


def field_error(where: str, field: str, msg: str) -> HTTPException:
    """A 422 naming the field: ``where`` is body, query or path."""
    return HTTPException(422, detail=[{"loc": [where, field], "msg": msg, "type": "value_error"}])
