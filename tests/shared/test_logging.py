"""Logs: JSON lines in production, and a careless PII field is masked."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from shared.observability.logging import configure_logging


@pytest.fixture(autouse=True)
def restore_logging():
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def test_json_lines_with_service_and_pii_masked(capsys):
    configure_logging("contacts", fmt="json", level="INFO")
    structlog.get_logger("t").info("contact.added", email="camille@exemple.fr", name="Camille", contact_id="c1")
    logging.getLogger("uvicorn.error").info("stdlib loggers go through the same formatter")
    lines = [json.loads(line) for line in capsys.readouterr().err.strip().splitlines()]
    assert lines[0]["event"] == "contact.added" and lines[0]["service"] == "contacts"
    assert lines[0]["email"] == "[redacted]" and lines[0]["name"] == "[redacted]"
    assert lines[0]["contact_id"] == "c1"
    assert lines[1]["event"] == "stdlib loggers go through the same formatter"
    assert "camille" not in json.dumps(lines).lower()
