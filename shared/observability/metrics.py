"""Metrics every service exports. Labels carry subject *patterns* and
route templates, never concrete ids, so no label can hold PII or explode
cardinality."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MESSAGES_HANDLED = Counter(
    "maillage_messages_handled_total",
    "NATS messages handled successfully, per subject pattern.",
    ["service", "subject"],
)
MESSAGES_FAILED = Counter(
    "maillage_messages_failed_total",
    "NATS messages that failed: invalid_payload (terminated) or handler_error (redelivered).",
    ["service", "subject", "reason"],
)
HANDLER_SECONDS = Histogram(
    "maillage_handler_seconds",
    "Time spent in a NATS handler, per subject pattern.",
    ["service", "subject"],
)
MESSAGES_PUBLISHED = Counter(
    "maillage_messages_published_total",
    "Events published to JetStream, per subject pattern.",
    ["service", "subject"],
)
HTTP_REQUESTS = Counter(
    "maillage_http_requests_total",
    "HTTP requests served, per route template and status code.",
    ["service", "route", "status"],
)
