"""Staff accounts (created and revoked by admins, each token shown once)
and the audit trail of everything staff did."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, ConfigDict, Field

from services.feed.api.deps import Admin, Editor, EngineDep
from services.feed.domain import Role
from services.feed.store import StaffAccount
from services.feed.usecases import staff
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
async def whoami(actor: Editor) -> Me:
    return Me(id=actor.id, name=actor.name, role=actor.role)


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a staff account (admin)")
async def create_account(body: AccountIn, engine: EngineDep, actor: Admin) -> AccountCreated:
    account, token = await staff.create_account(engine, body.name, body.role, actor)
    return AccountCreated(**account_out(account).model_dump(), token=token)


@router.get("", summary="Staff accounts, revoked ones included (admin)")
async def list_accounts(engine: EngineDep, _actor: Admin) -> list[AccountOut]:
    return [account_out(a) for a in await staff.list_accounts(engine)]


@router.post("/{account_id}/revoke", summary="Revoke a staff account: its token stops working (admin)")
async def revoke_account(account_id: str, engine: EngineDep, actor: Admin) -> AccountOut:
    return account_out(await staff.revoke_account(engine, account_id, actor))


@audit_router.get("/audit", summary="Who did what, when, newest first (admin)")
async def read_audit(
    engine: EngineDep,
    _actor: Admin,
    limit: int = Query(default=100, ge=1, le=500),
    # le: ids are integers in the database; a larger one was an overflow there (a 500)
    before: int | None = Query(default=None, ge=1, le=2**31 - 1, description="entries older than this id"),
    action: str | None = Query(default=None, max_length=64, description="e.g. message.publish"),
    actor: str | None = Query(default=None, max_length=64, description="an account id"),
    target: str | None = Query(default=None, max_length=200, description="e.g. message:<id>"),
) -> AuditPage:
    rows = await staff.read_audit(engine, limit=limit, before=before, action=action, actor=actor, target=target)
    items = [AuditOut.model_validate(r, from_attributes=True) for r in rows]
    return AuditPage(items=items, next_before=items[-1].id if len(items) == limit else None)
