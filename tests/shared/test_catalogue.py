"""The catalogue is the single declaration of subjects and streams, and the
services keep to it."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import BaseModel

from shared import asyncapi, catalogue
from shared.catalogue import SERVICES, STREAMS, SUBJECTS, subject_matches
from tests.support.apps import build_apps
from tests.support.paths import ROOT
from tools import subjects_table


def test_every_subject_lives_in_its_declared_stream_and_only_there():
    for spec in SUBJECTS:
        owners = [s.name for s in STREAMS if any(subject_matches(p, spec.subject(*["x"] * spec.pattern.count("*"))) for p in s.subjects)]
        assert owners == [spec.stream.name], f"{spec.pattern} is captured by {owners}"


def test_producers_and_consumers_are_known_services():
    for spec in SUBJECTS:
        assert spec.producer in SERVICES
        assert spec.consumers and set(spec.consumers) <= set(SERVICES), spec.pattern


def test_pii_travels_only_between_contacts_and_dispatch():
    for spec in SUBJECTS:
        if spec.carries_pii:
            assert spec.pattern.startswith("dispatch.") and spec.pattern.endswith(".jobs")
            assert spec.producer == catalogue.CONTACTS
            assert all(c.startswith("dispatch-") for c in spec.consumers)
    # the models of non-PII subjects have no field that could hold an address or a name
    pii_field = re.compile(r"email|recipient|reply_to|phone|(^|_)name$")
    for spec in SUBJECTS:
        if not spec.carries_pii:
            leaking = [f for f in spec.model.model_fields if pii_field.search(f)]
            assert not leaking, f"{spec.pattern} model has PII-looking fields {leaking}"


@pytest.mark.parametrize("spec", SUBJECTS, ids=lambda s: s.pattern)
def test_event_models_are_versioned_and_tolerant(spec):
    # a newer producer's extra fields are ignored (the rule: shared/events.py)
    model: type[BaseModel] = spec.model
    assert "schema_version" in model.model_fields
    assert model.model_config.get("extra") == "ignore"


def test_subject_tokens_are_checked():
    assert catalogue.PROFILE_UPDATED.subject("v1") == "contacts.profiles.v1"
    for bad in ("a.b", "*", ">", "a b", ""):
        with pytest.raises(ValueError):
            catalogue.PROFILE_UPDATED.subject(bad)
    with pytest.raises(ValueError):
        catalogue.MESSAGE_PUBLISHED.subject("extra")


def test_nats_wildcards():
    assert subject_matches("dispatch.*.jobs", "dispatch.email.jobs")
    assert not subject_matches("dispatch.*.jobs", "dispatch.email.results")
    assert subject_matches("feed.messages.>", "feed.messages.published")
    assert not subject_matches("feed.messages.>", "feed.messages")
    assert not subject_matches("contacts.profiles.*", "contacts.profiles.a.b")


def test_each_service_subscribes_only_to_subjects_it_is_declared_to_consume():
    apps = build_apps()
    seen = set()
    for service, app in apps.items():
        bus = app.state.bus
        assert bus.service == service
        subscribed = {sub._resolved_subject_string for sub in bus.broker.subscribers}
        subscribed |= {consumer.spec.pattern for consumer in bus.pull_consumers}  # nats-py, not FastStream
        assert subscribed, f"{service} consumes nothing?"
        for subject in subscribed:
            spec = catalogue.spec_for(subject)
            assert spec is not None, f"{service} subscribes to undeclared {subject}"
            assert spec.pattern == subject and service in spec.consumers, (service, subject)
            seen.add((spec.pattern, service))
    declared = {(s.pattern, c) for s in SUBJECTS for c in s.consumers}
    assert seen == declared, f"declared consumers that subscribe to nothing: {declared - seen}"


SUBJECT_LITERAL = re.compile(r"""["'](feed|contacts|matcher|dispatch)\.[a-z*>]+(\.[a-z*>]+)*["']""")
BYPASS = re.compile(r"\.broker\.(publish|subscriber|publisher)\(|nats\.connect\(|\.jetstream\(\)\.publish")


def test_services_never_spell_a_subject_or_bypass_the_bus():
    """Only shared/ names subjects; services go through shared.messaging."""
    offenders = []
    for path in (ROOT / "services").rglob("*.py"):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if SUBJECT_LITERAL.search(line) or BYPASS.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_readme_subject_table_is_generated_from_the_catalogue():
    readme = (ROOT / "README.md").read_text()
    assert subjects_table.replace_in(readme) == readme, "run `make docs` to regenerate the README table"
    for spec in SUBJECTS:
        assert f"`{spec.pattern}`" in readme


def _refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def _resolve(doc, ref: str):
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


@pytest.mark.parametrize("service", [None, *SERVICES])
def test_asyncapi_documents_every_subject_of_the_service_and_every_ref_resolves(service):
    doc = asyncapi.document(service)
    assert doc["asyncapi"] == "3.0.0"
    for ref in _refs(doc):
        _resolve(doc, ref)
    expected = {s.pattern.replace("*", "{id}") for s in SUBJECTS
                if service is None or service == s.producer or service in s.consumers}
    assert {c["address"] for c in doc["channels"].values()} == expected
    for schema in doc["components"]["schemas"].values():
        assert "schema_version" in schema["properties"]


def test_committed_asyncapi_document_is_current():
    committed = json.loads((ROOT / "docs" / "asyncapi.json").read_text())
    assert committed == json.loads(json.dumps(asyncapi.document())), "run `make docs`"
