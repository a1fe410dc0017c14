"""Staff sign in with their token; the session remembers the account, a
fingerprint of the token and the account's session epoch, so revoking the
account, rotating the bootstrap token or signing out (on any device, any
replica: the epoch is in the database) ends the session at the next
request."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse

from services.feed.api.deps import engine, require_role, settings, staff_authenticator
from services.feed.domain import Actor, Role
from services.feed.usecases import sessions
from shared.auth import Principal, hash_token
from shared.web.pages import SignInRequired, render, site_of
from shared.web.session import Sessions, WebSession, csrf_protect, fingerprint, sessions_of

router = APIRouter(prefix="/console", include_in_schema=False, dependencies=[Depends(csrf_protect)])


def bootstrap_hash(request: Request) -> str:
    return hash_token(settings(request).staff_token.get_secret_value())


async def account_of(request: Request, actor_id: str) -> tuple[Actor, str, int] | None:
    return await sessions.account_of(engine(request), actor_id, bootstrap_hash(request))


async def web_actor(request: Request) -> Actor:
    session = sessions_of(request).read(request)
    if session is None or session.sub is None:
        raise SignInRequired()
    found = await account_of(request, session.sub)
    if found is None or not session.current(found[1], found[2]):
        raise SignInRequired()
    actor = found[0]
    request.state.principal = Principal(actor.role, actor)  # what the API's role checks read
    return actor


async def end_sessions(request: Request, session: WebSession) -> None:
    """Sign-out: every console session of this account ends, on every
    device and replica. Only a current session may do it (compare-and-set
    on the epoch it carries)."""
    if session.sub is None or session.ep is None:  # not signed in: nothing to end
        return
    found = await account_of(request, session.sub)
    if found is None or not session.current(found[1], found[2]):
        return
    await sessions.end_sessions(engine(request), session.sub, session.ep)


def allowed(request: Request, needed: Role) -> Actor:
    """The API's own role check (403 naming the role needed)."""
    return require_role(needed)(request, "session")


@router.get("/sign-in")
async def sign_in_page(request: Request):
    return render(request, "sign_in.html")


@router.post("/sign-in")
async def sign_in(request: Request, token: str = Form(default="")):
    token = token.strip()
    principal = await staff_authenticator(engine(request), bootstrap_hash(request))(token) if token else None
    if principal is None or not isinstance(principal.account, Actor):
        t = site_of(request).catalog.translator(site_of(request).catalog.language(request))
        return render(request, "sign_in.html", 401, errors=[t("signin.bad_token")])
    actor_id = principal.account.id
    epoch = await sessions.session_epoch(engine(request), actor_id)
    response = RedirectResponse(f"{site_of(request).prefix}/messages", status_code=303)
    sessions_of(request).store(response, Sessions.new(actor_id, fingerprint(hash_token(token)), epoch))
    return response


@router.get("/")
async def home(request: Request, _actor: Actor = Depends(web_actor)):
    return RedirectResponse(f"{site_of(request).prefix}/messages", status_code=303)
