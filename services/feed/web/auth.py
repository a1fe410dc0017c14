"""Staff sign in with their token; the session remembers the account and
a fingerprint of the token, so revoking the account (or rotating the
bootstrap token) ends the session at the next request."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse

from services.feed.api.deps import require_role, settings, staff_authenticator
from services.feed.domain import BOOTSTRAP, Actor, Role
from services.feed.store import StaffAccount
from shared.auth import Principal, hash_token
from shared.db import in_session
from shared.web.pages import SignInRequired, render, site_of
from shared.web.session import Sessions, csrf_protect, fingerprint, sessions_of

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(csrf_protect)])


def bootstrap_hash(request: Request) -> str:
    return hash_token(settings(request).staff_token.get_secret_value())


async def account_of(request: Request, actor_id: str) -> tuple[Actor, str] | None:
    """The actor and the hash of its current token; None once revoked."""
    if actor_id == BOOTSTRAP.id:
        return BOOTSTRAP, bootstrap_hash(request)
    row = await in_session(request.app.state.engine, lambda s: s.get(StaffAccount, actor_id))
    if row is None or row.revoked_at is not None:
        return None
    return Actor(id=row.id, name=row.name, role=row.role), row.token_hash


async def web_actor(request: Request) -> Actor:
    session = sessions_of(request).read(request)
    if session is None or session.sub is None:
        raise SignInRequired()
    found = await account_of(request, session.sub)
    if found is None or fingerprint(found[1]) != session.fp:
        raise SignInRequired()
    actor = found[0]
    request.state.principal = Principal(actor.role, actor)  # what the API's role checks read
    return actor


def allowed(request: Request, needed: Role) -> Actor:
    """The API's own role check (403 naming the role needed)."""
    return require_role(needed)(request, "session")


@router.get("/sign-in")
async def sign_in_page(request: Request):
    return render(request, "sign_in.html")


@router.post("/sign-in")
async def sign_in(request: Request, token: str = Form(default="")):
    token = token.strip()
    principal = await staff_authenticator(request.app.state.engine, bootstrap_hash(request))(token) if token else None
    if principal is None or not isinstance(principal.account, Actor):
        t = site_of(request).catalog.translator(site_of(request).catalog.language(request))
        return render(request, "sign_in.html", 401, errors=[t("signin.bad_token")])
    response = RedirectResponse(f"{site_of(request).prefix}/messages", status_code=303)
    sessions_of(request).store(response, Sessions.new(principal.account.id, fingerprint(hash_token(token))))
    return response


@router.get("/")
async def home(request: Request, _actor: Actor = Depends(web_actor)):
    return RedirectResponse(f"{site_of(request).prefix}/messages", status_code=303)
