"""Staff accounts, created and revoked by admins (each token shown once),
and the audit trail of everything staff did."""

from __future__ import annotations

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from services.feed.domain import Actor, Role
from services.feed.errors import NotFound
from services.feed.store import AuditEntry, StaffAccount
from services.feed.usecases.audit import audit_row
from shared.auth import hash_token, new_token
from shared.db import in_session
from shared.events import utcnow


async def create_account(engine: Engine, name: str, role: Role, actor: Actor) -> tuple[StaffAccount, str]:
    """The account and its token: only its hash is kept."""
    token = new_token("staff")

    def save(session: Session) -> StaffAccount:
        account = StaffAccount(name=name, role=role.value, token_hash=hash_token(token), created_by=actor.id)
        session.add(account)
        session.add(audit_row(actor, "staff.create", f"staff:{account.id}", name=name, role=role.value))
        session.commit()
        return account

    return await in_session(engine, save), token


async def list_accounts(engine: Engine) -> list[StaffAccount]:
    return await in_session(engine, lambda s: list(
        s.exec(select(StaffAccount).order_by(col(StaffAccount.created_at), col(StaffAccount.id)))))


async def revoke_account(engine: Engine, account_id: str, actor: Actor) -> StaffAccount:
    """Its token stops working; revoking twice changes nothing."""

    def revoke(session: Session) -> StaffAccount | None:
        account = session.get(StaffAccount, account_id)
        if account is None:
            return None
        if account.revoked_at is None:
            account.revoked_at, account.revoked_by = utcnow(), actor.id
            session.add(account)
            session.add(audit_row(actor, "staff.revoke", f"staff:{account.id}", name=account.name))
            session.commit()
        return account

    account = await in_session(engine, revoke)
    if account is None:
        raise NotFound("staff account")
    return account


async def read_audit(engine: Engine, *, limit: int, before: int | None = None, action: str | None = None,
                     actor: str | None = None, target: str | None = None) -> list[AuditEntry]:
    """Newest first; ``before``: entries older than this id."""

    def load(session: Session) -> list[AuditEntry]:
        q = select(AuditEntry)
        if before is not None:
            q = q.where(col(AuditEntry.id) < before)
        if action is not None:
            q = q.where(AuditEntry.action == action)
        if actor is not None:
            q = q.where(AuditEntry.actor_id == actor)
        if target is not None:
            q = q.where(AuditEntry.target == target)
        return list(session.exec(q.order_by(col(AuditEntry.id).desc()).limit(limit)))

    return await in_session(engine, load)
