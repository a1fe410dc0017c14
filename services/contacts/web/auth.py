"""Signing in: the invitation link or an emailed sign-in link (/join#<code>:
the code travels in the fragment, which browsers never send, so it appears
in no log) or a token already issued (the command line's, the demo's).
Either becomes a session cookie; the token itself is never kept. Signing
out ends every session of the account (its epoch moves)."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from sqlalchemy import update

from services.contacts.api import accounts
from services.contacts.api.deps import VOLUNTEER
from services.contacts.store import Volunteer
from shared.db import in_session
from shared.web.pages import SignInRequired, problems, render, site_of
from shared.web.session import Sessions, WebSession, csrf_protect, fingerprint, sessions_of

router = APIRouter(include_in_schema=False, dependencies=[Depends(csrf_protect)])


async def web_volunteer(request: Request) -> Volunteer:
    """The signed-in volunteer, whose current token and session epoch are
    still the ones the session was opened with (read from the database on
    every request: a sign-out on any replica counts here at once);
    otherwise back to the sign-in page."""
    session = sessions_of(request).read(request)
    if session is None or session.sub is None:
        raise SignInRequired()
    vol = await in_session(request.app.state.engine, lambda s: s.get(Volunteer, session.sub))
    if vol is None or not session.current(vol.token_hash, vol.session_epoch):
        raise SignInRequired()
    return vol


async def end_sessions(request: Request, session: WebSession) -> None:
    """Sign-out: every session of this volunteer ends, on every device.
    Only a current session may do it (compare-and-set on the epoch it
    carries), so a stale or copied-then-revoked cookie changes nothing."""

    def bump(s) -> None:
        vol = s.get(Volunteer, session.sub)
        if vol is not None and session.current(vol.token_hash, vol.session_epoch):
            s.exec(update(Volunteer).where(Volunteer.id == vol.id, Volunteer.session_epoch == session.ep)
                   .values(session_epoch=Volunteer.session_epoch + 1))
            s.commit()

    await in_session(request.app.state.engine, bump)


def signed_in(request: Request, vol: Volunteer) -> RedirectResponse:
    """A session bound to the account's credential and epoch as ``vol``
    holds them."""
    response = RedirectResponse(f"{site_of(request).prefix}/inbox", status_code=303)
    sessions_of(request).store(response, Sessions.new(vol.id, fingerprint(vol.token_hash), vol.session_epoch))
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
    # read back: redeeming has just moved the credential and the epoch
    vol = await in_session(request.app.state.engine, lambda s: s.get(Volunteer, created.volunteer_id))
    return signed_in(request, vol)


@router.post("/app/sign-in")
async def sign_in_with_token(request: Request, token: str = Form(default="")):
    principal = await request.app.state.authenticate(token.strip()) if token.strip() else None
    if principal is None or principal.role != VOLUNTEER:
        t = site_of(request).catalog.translator(site_of(request).catalog.language(request))
        return render(request, "sign_in.html", 401, joining=False, errors=[t("signin.bad_token")])
    return signed_in(request, principal.account)


@router.post("/app/sign-in/recover")
async def recover_by_email(request: Request, background: BackgroundTasks, email: str = Form(default="")):
    """The API's recovery, from the sign-in page: the same answer whatever
    the address (the link goes only to an account's own address)."""
    try:
        body = accounts.RecoverIn(email=email)
    except ValidationError as exc:
        return render(request, "sign_in.html", 422, joining=False, errors=problems(exc))
    await accounts.recover(body, request, background)
    t = site_of(request).catalog.translator(site_of(request).catalog.language(request))
    return render(request, "sign_in.html", joining=False, notice=t("signin.recover.sent"))


@router.get("/app/")
async def home(request: Request, _vol: Volunteer = Depends(web_volunteer)):
    return RedirectResponse(f"{site_of(request).prefix}/inbox", status_code=303)
