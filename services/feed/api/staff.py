"""Staff accounts (created and revoked by admins, each token shown once)
and the audit trail of everything staff did."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, select

from services.feed.api.deps import engine, not_found, require_role
from services.feed.domain import Actor, Role
from services.feed.publishing import audit_row
from services.feed.store import AuditEntry, StaffAccount
from shared.auth import hash_token, new_token
from shared.db import in_session
from shared.events import utcnow
from shared.text import HeaderText

me_router = APIRouter(tags=["staff"])
router = APIRouter(prefix="/staff", tags=["staff"])
audit_router = APIRouter(tags=["staff"])


class Me(BaseModel):
    id: str
    name: str
    role: str


class AccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: HeaderText = Field(min_length=1, max_length=200, description="who this is, as the audit will say it")
    role: Role


class AccountOut(BaseModel):
    id: str
    name: str
    role: str
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    revoked_by: str | None


class AccountCreated(AccountOut):
    token: str = Field(description="shown this once: only its hash is kept")


class AuditOut(BaseModel):
    id: int
    at: datetime
    actor_id: str
    actor_name: str
    actor_role: str
    action: str
    target: str | None
    detail: dict


class AuditPage(BaseModel):
    items: list[AuditOut]
    next_before: int | None = Field(description="pass as ?before= for the next (older) page")


def account_out(a: StaffAccount) -> AccountOut:
    return AccountOut(id=a.id, name=a.name, role=a.role, created_at=a.created_at, created_by=a.created_by,
                      revoked_at=a.revoked_at, revoked_by=a.revoked_by)


@me_router.get("/me", summary="Who this token is")
async def whoami(actor: Actor = Depends(require_role(Role.editor))) -> Me:
    return Me(id=actor.id, name=actor.name, role=actor.role)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a staff account (admin)")
async def create_account(body: AccountIn, request: Request,
                         actor: Actor = Depends(require_role(Role.admin))) -> AccountCreated:
    token = new_token("staff")

    def save(session: Session) -> StaffAccount:
        account = StaffAccount(name=body.name, role=body.role.value, token_hash=hash_token(token),
                               created_by=actor.id)
        session.add(account)
        session.add(audit_row(actor, "staff.create", f"staff:{account.id}", name=body.name, role=body.role.value))
        session.commit()
        return account

    account = await in_session(engine(request), save)
    return AccountCreated(**account_out(account).model_dump(), token=token)


@router.get("", summary="Staff accounts, revoked ones included (admin)")
async def list_accounts(request: Request, _actor: Actor = Depends(require_role(Role.admin))) -> list[AccountOut]:
    rows = await in_session(engine(request), lambda s: list(
        s.exec(select(StaffAccount).order_by(StaffAccount.created_at, StaffAccount.id))))
    return [account_out(a) for a in rows]


@router.post("/{account_id}/revoke", summary="Revoke a staff account: its token stops working (admin)")
async def revoke_account(account_id: str, request: Request,
                         actor: Actor = Depends(require_role(Role.admin))) -> AccountOut:
    def revoke(session: Session) -> StaffAccount | None:
        account = session.get(StaffAccount, account_id)
        if account is None:
            return None
        if account.revoked_at is None:  # revoking twice changes nothing
            account.revoked_at, account.revoked_by = utcnow(), actor.id
            session.add(account)
            session.add(audit_row(actor, "staff.revoke", f"staff:{account.id}", name=account.name))
            session.commit()
        return account

    account = await in_session(engine(request), revoke)
    if account is None:
        raise not_found("staff account")
    return account_out(account)


@audit_router.get("/audit", summary="Who did what, when, newest first (admin)")
async def read_audit(
    request: Request,
    _actor: Actor = Depends(require_role(Role.admin)),
    limit: int = Query(default=100, ge=1, le=500),
    # le: ids are integers in the database; a larger one was an overflow there (a 500)
    before: int | None = Query(default=None, ge=1, le=2**31 - 1, description="entries older than this id"),
    action: str | None = Query(default=None, max_length=64, description="e.g. message.publish"),
    actor: str | None = Query(default=None, max_length=64, description="an account id"),
    target: str | None = Query(default=None, max_length=200, description="e.g. message:<id>"),
) -> AuditPage:
    def load(session: Session) -> list[AuditEntry]:
        q = select(AuditEntry)
        if before is not None:
            q = q.where(AuditEntry.id < before)
        if action is not None:
            q = q.where(AuditEntry.action == action)
        if actor is not None:
            q = q.where(AuditEntry.actor_id == actor)
        if target is not None:
            q = q.where(AuditEntry.target == target)
        return list(session.exec(q.order_by(AuditEntry.id.desc()).limit(limit)))

    rows = await in_session(engine(request), load)
    items = [AuditOut.model_validate(r, from_attributes=True) for r in rows]
    return AuditPage(items=items, next_before=items[-1].id if len(items) == limit else None)
