"""Signing in: the invitation link (/join#<code>: the code travels in the
fragment, which browsers never send, so it appears in no log) or a token
already issued (the command line's, the demo's). Either becomes a session
cookie; the token itself is never kept."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from services.contacts.api import accounts
from services.contacts.api.deps import VOLUNTEER
from services.contacts.store import Volunteer
from shared.auth import hash_token
from shared.db import in_session
from shared.web.pages import SignInRequired, problems, render, site_of
from shared.web.session import Sessions, csrf_protect, fingerprint, sessions_of

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])


async def web_volunteer(request: Request) -> Volunteer:
    """The signed-in volunteer, whose current token is still the one the
    session was opened with; otherwise back to the sign-in page."""
    session = sessions_of(request).read(request)
    if session is None or session.sub is None:
        raise SignInRequired()
    vol = await in_session(request.app.state.engine, lambda s: s.get(Volunteer, session.sub))
    if vol is None or vol.token_hash is None or fingerprint(vol.token_hash) != session.fp:
        raise SignInRequired()
    return vol


def signed_in(request: Request, volunteer_id: str, token_hash: str) -> RedirectResponse:
    response = RedirectResponse(f"{site_of(request).prefix}/inbox", status_code=303)
    sessions_of(request).store(response, Sessions.new(volunteer_id, fingerprint(token_hash)))
    return response


@router.get("/join")
async def join(request: Request):
    """The invitation link's page: join.js posts the fragment's code."""
    return render(request, "sign_in.html", joining=True)


@router.get("/app/sign-in")
async def sign_in_page(request: Request):
    return render(request, "sign_in.html", joining=False)


@router.post("/app/sign-in/invite")
async def redeem_invite(request: Request, code: str = Form(default="")):
    try:
        created = await accounts.redeem(accounts.RedeemIn(code=code.strip()), request)
    except (ValidationError, HTTPException) as exc:
        return render(request, "sign_in.html", 400, joining=True, errors=problems(exc))
    return signed_in(request, created.volunteer_id, hash_token(created.token))


@router.post("/app/sign-in")
async def sign_in_with_token(request: Request, token: str = Form(default="")):
    principal = await request.app.state.authenticate(token.strip()) if token.strip() else None
    if principal is None or principal.role != VOLUNTEER:
        t = site_of(request).catalog.translator(site_of(request).catalog.language(request))
        return render(request, "sign_in.html", 401, joining=False, errors=[t("signin.bad_token")])
    return signed_in(request, principal.account.id, principal.account.token_hash)


@router.get("/app/")
async def home(request: Request, _vol: Volunteer = Depends(web_volunteer)):
    return RedirectResponse(f"{site_of(request).prefix}/inbox", status_code=303)
