"""Structured logs: JSON lines in production, readable lines in dev.

A last-line-of-defence processor masks fields that could hold a contact's
identity, so a careless ``log.info(..., email=...)`` cannot leak PII."""

from __future__ import annotations

import logging
import sys

import structlog

PII_KEYS = frozenset(
    {"email", "recipient", "recipient_email", "recipient_name", "name", "phone",
     "reply_to", "to", "address", "body", "notes", "contact"}
)


def redact_pii(_logger, _method, event_dict: structlog.typing.EventDict) -> structlog.typing.EventDict:
    for key in PII_KEYS & event_dict.keys():
        event_dict[key] = "[redacted]"
    return event_dict


def configure_logging(service: str, fmt: str = "console", level: str = "INFO") -> None:
    shared_processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_pii,
    ]
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared_processors, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared_processors,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if fmt == "json" else (lambda _l, _m, e: e),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # A server started in the same process earlier (uvicorn.Config sets up
    # its own handlers, levels and propagate=False) would otherwise keep its
    # records away from this formatter, and so from the PII redaction.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        own = logging.getLogger(name)
        own.handlers[:], own.propagate = [], True
        own.setLevel(logging.NOTSET)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).handlers[:] = []
        logging.getLogger(noisy).propagate = True
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.contextvars.bind_contextvars(service=service)
