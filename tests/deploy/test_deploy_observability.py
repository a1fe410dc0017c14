"""Every metric the alerts and the dashboard name is one a service really
exports, or one of the few that come from outside, listed here."""

from __future__ import annotations

import json
import re

import yaml
from prometheus_client import REGISTRY

from tests.support.paths import ROOT

MONITORING = ROOT / "deploy/k8s/base/monitoring"
# Metrics Maillage does not export itself: JetStream consumer state from the
# NATS Helm chart's prometheus-nats-exporter (promExporter: -jsz=all -prefix=nats), and
# Prometheus' own scrape health.
EXTERNAL = {"nats_consumer_num_pending", "up"}
SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",), "summary": ("_sum", "_count", "_created")}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The series a PromQL expression reads: its identifiers, once strings,
    label matchers, groupings, ranges and function calls are set aside."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}|\[[^]]*\]", " ", bare)
    bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    names = re.findall(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", bare)
    return {n for n in names if n.lower() not in KEYWORDS and not re.fullmatch(r"\d+[smhdwy]?|e\d+", n)}


def exported() -> set[str]:
    """What the services' processes register: importing their apps defines
    every module-level metric."""
    import services.contacts.app  # noqa: F401
    import services.dispatch.email.app  # noqa: F401
    import services.dispatch.social.app  # noqa: F401
    import services.feed.app  # noqa: F401
    import services.matcher.app  # noqa: F401

    names = set()
    for family in REGISTRY.collect():
        names |= {family.name + s for s in SUFFIXES.get(family.type, ("",))}
    return names


def alert_expressions() -> dict[str, str]:
    rule = yaml.safe_load((MONITORING / "prometheusrule.yaml").read_text())
    return {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}


def dashboard_expressions() -> dict[str, str]:
    board = json.loads((MONITORING / "maillage-dashboard.json").read_text())
    return {p["title"]: t["expr"] for p in board["panels"] for t in p["targets"]}


def test_every_metric_in_alerts_and_dashboard_is_exported():
    known = exported() | EXTERNAL
    assert "maillage_dispatch_emails_total" in known and "maillage_handler_seconds_bucket" in known
    for where, exprs in (("alert", alert_expressions()), ("panel", dashboard_expressions())):
        for name, expr in exprs.items():
            used = metric_names(expr)
            assert used, f"{where} {name}: no metric found in {expr!r}"
            assert used <= known, f"{where} {name} uses {used - known}, which nothing exports"


def test_metric_names_are_read_out_of_promql():
    expr = 'sum by (service) (rate(maillage_x_total{route="/a{b}"}[5m])) / clamp_min(up, 1e-9) > 0.05'
    assert metric_names(expr) == {"maillage_x_total", "up"}


def test_the_alerts_the_runbook_promises_exist():
    alerts = alert_expressions()
    for alert, metric in (("MaillageDispatchBacklog", "nats_consumer_num_pending"),
                          ("MaillageConsumerLag", "nats_consumer_num_pending"),
                          ("MaillageDeadLetters", "maillage_messages_published_total"),
                          ("MaillageSmtpFailureRate", "maillage_dispatch_emails_total"),
                          ("MaillageSuppressionLag", "nats_consumer_num_pending"),
                          ("MaillageNotReady", "maillage_http_requests_total")):
        assert metric in alerts[alert], alert
    readme = (ROOT / "deploy/README.md").read_text()
    for alert in alerts:
        assert alert in readme, f"{alert} is not in the runbook's alert table"


def test_the_dead_letter_alert_matches_the_catalogue_s_dead_subjects():
    from shared.catalogue import SUBJECTS

    dead = [s.pattern for s in SUBJECTS if s.stream.name == "DISPATCH_DEAD"]
    pattern = re.search(r'subject=~"([^"]+)"', alert_expressions()["MaillageDeadLetters"]).group(1)
    regex = pattern.encode().decode("unicode_escape")
    assert dead and all(re.fullmatch(regex, d) for d in dead)
