"""Signing in: the invitation link or an emailed sign-in link (/join#<code>:
the code travels in the fragment, which browsers never send, so it appears
in no log) or a token already issued (the command line's, the demo's).
Either becomes a session cookie; the token itself is never kept. Signing
out ends every session of the account (its epoch moves)."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Depends, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import ValidationError

from services.contacts.api.accounts import RecoverIn, RedeemIn
from services.contacts.api.deps import VOLUNTEER, ContactsDep, contacts
from services.contacts.store import Volunteer
from services.contacts.usecases import provisioning
from services.contacts.web.refusals import REFUSALS, refusal
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
    vol = await provisioning.signed_in_volunteer(contacts(request).engine, session.sub)
    if vol is None or not session.current(vol.token_hash, vol.session_epoch):
        raise SignInRequired()
    return vol


async def end_sessions(request: Request, session: WebSession) -> None:
    """Sign-out: every session of this volunteer ends, on every device."""
    await provisioning.sign_out_everywhere(contacts(request).engine, session)


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
async def redeem_invite(request: Request, ctx: ContactsDep, code: str = Form(default="")):
    try:
        vol, _token = await provisioning.redeem(ctx.engine, RedeemIn(code=code.strip()).code)
    except REFUSALS as exc:
        return render(request, "sign_in.html", 400, joining=True, errors=refusal(exc)[1])
    # the account as redeeming left it: the credential and the epoch have just moved
    return signed_in(request, vol)


@router.post("/app/sign-in")
async def sign_in_with_token(request: Request, token: str = Form(default="")):
    principal = await request.app.state.authenticate(token.strip()) if token.strip() else None
    if principal is None or principal.role != VOLUNTEER:
        t = site_of(request).catalog.translator(site_of(request).catalog.language(request))
        return render(request, "sign_in.html", 401, joining=False, errors=[t("signin.bad_token")])
    return signed_in(request, principal.account)


@router.post("/app/sign-in/recover")
async def recover_by_email(request: Request, ctx: ContactsDep, background: BackgroundTasks,
                           email: str = Form(default="")):
    """The API's recovery, from the sign-in page: the same answer whatever
    the address (the link goes only to an account's own address)."""
    try:
        body = RecoverIn(email=email)
    except ValidationError as exc:
        return render(request, "sign_in.html", 422, joining=False, errors=problems(exc))
    background.add_task(provisioning.send_sign_in_link, ctx, str(body.email).lower())
    t = site_of(request).catalog.translator(site_of(request).catalog.language(request))
    return render(request, "sign_in.html", joining=False, notice=t("signin.recover.sent"))


@router.get("/app/")
async def home(request: Request, _vol: Volunteer = Depends(web_volunteer)):
    return RedirectResponse(f"{site_of(request).prefix}/inbox", status_code=303)
