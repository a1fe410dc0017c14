"""The audit trail's rows: every use case that changes something adds one
in the same transaction as the change."""

from __future__ import annotations

from services.feed.domain import Actor
from services.feed.store import AuditEntry


def audit_row(actor: Actor, action: str, target: str | None = None, **detail: object) -> AuditEntry:
    return AuditEntry(actor_id=actor.id, actor_name=actor.name, actor_role=actor.role,
                      action=action, target=target, detail=detail)
