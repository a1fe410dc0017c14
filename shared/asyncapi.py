"""AsyncAPI 3.0 documents generated from the catalogue: the whole system's,
or one service's (what it sends and receives). Served by each service at
``/asyncapi.json`` and written to ``docs/asyncapi.json`` by ``make docs``."""

from __future__ import annotations

from typing import Any

from shared.catalogue import SUBJECTS, SubjectSpec


def _channel_id(spec: SubjectSpec) -> str:
    return spec.pattern.replace(".", "_").replace("*", "id").replace(">", "all")


def _message_name(spec: SubjectSpec) -> str:
    return spec.model.__name__


def document(service: str | None = None) -> dict[str, Any]:
    """The AsyncAPI document of ``service`` (None: the whole system)."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for spec in SUBJECTS:
        sends = service in (None, spec.producer)
        receives = [c for c in spec.consumers if service in (None, c)]
        if not sends and not receives:
            continue
        cid, name = _channel_id(spec), _message_name(spec)
        schemas[name] = spec.model.model_json_schema(
            ref_template=f"#/components/schemas/{name}/$defs/{{model}}"
        )
        messages[name] = {
            "name": name,
            "contentType": "application/json",
            "payload": {"$ref": f"#/components/schemas/{name}"},
            "headers": {"type": "object", "properties": {"Nats-Msg-Id": {
                "type": "string", "description": "JetStream dedupe key"}}},
        }
        channels[cid] = {
            "address": spec.pattern.replace("*", "{id}"),
            "description": f"{spec.description} Stream {spec.stream.name}."
            + (" Carries PII: contacts and dispatch only." if spec.carries_pii else ""),
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            **({"parameters": {"id": {"description": spec.key or "id"}}} if "*" in spec.pattern else {}),
        }
        if sends:
            operations[f"{spec.producer}_sends_{cid}"] = {
                "action": "send", "channel": {"$ref": f"#/channels/{cid}"},
                "summary": f"{spec.producer} publishes", "x-service": spec.producer,
            }
        for consumer in receives:
            operations[f"{consumer}_receives_{cid}"] = {
                "action": "receive", "channel": {"$ref": f"#/channels/{cid}"},
                "summary": f"{consumer} consumes", "x-service": consumer,
            }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": f"Maillage {service}" if service else "Maillage",
            "version": "0.1.0",
            "description": "NATS JetStream subjects, generated from shared/catalogue.py.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


