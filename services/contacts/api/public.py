"""Pages a contact reaches from an email, with no account: one-click
unsubscribe (RFC 8058) and consent answers. The signed link is the proof;
it carries ids and an address hash, never the address."""

from __future__ import annotations

import html

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse

from services.contacts.api.deps import ContactsDep
from services.contacts.usecases.answer_link import Answer, answer_invitation
from services.contacts.usecases.answer_link import unsubscribe as unsubscribe_address
from shared.links import InvalidLink

router = APIRouter(tags=["contact's links (no login)"])


def page(title_fr: str, title_en: str, body: str = "", status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang=fr><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{html.escape(title_fr)}</title>"
        "<body style='font-family:system-ui,sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem'>"
        f"<h1>{html.escape(title_fr)}</h1><p lang=en><i>{html.escape(title_en)}</i></p>{body}</body></html>",
        status_code=status,
        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
                 "Referrer-Policy": "no-referrer"},
    )


async def invalid_link(_request: Request, exc: InvalidLink) -> HTMLResponse:
    """The app's handler for InvalidLink: a tampered, expired or misused link."""
    return page("Ce lien n'est pas valide", f"This link is not valid ({exc})", status=400)


@router.get("/u/{token}", response_class=HTMLResponse, summary="Unsubscribe page")
async def unsubscribe_page(token: str, ctx: ContactsDep) -> HTMLResponse:
    # GET never unsubscribes: mail scanners follow links.
    ctx.keys.links.verify("unsubscribe", token)  # InvalidLink: a 400 page
    return page("Ne plus recevoir ces messages", "Stop receiving these messages",
                "<form method=post><input type=hidden name=List-Unsubscribe value=One-Click>"
                "<button type=submit>Me désinscrire / Unsubscribe</button></form>")


@router.post("/u/{token}", response_class=HTMLResponse, summary="One-click unsubscribe (RFC 8058)")
async def unsubscribe(token: str, ctx: ContactsDep) -> HTMLResponse:
    """``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` lands here. It
    stops every message of the campaign to this address, from any volunteer."""
    payload = ctx.keys.links.verify("unsubscribe", token)  # InvalidLink: a 400 page
    await unsubscribe_address(ctx, payload)
    return page("C'est fait : vous ne recevrez plus rien de cette campagne",
                "Done: you will receive nothing more from this campaign")


@router.get("/consent/{token}", response_class=HTMLResponse, summary="Answer an invitation")
async def consent_page(token: str, ctx: ContactsDep) -> HTMLResponse:
    ctx.keys.links.verify("consent", token)  # InvalidLink: a 400 page
    return page("Recevoir ses messages ?", "Receive their messages?",
                "<form method=post><button name=answer value=yes>Oui / Yes</button> "
                "<button name=answer value=no>Non / No</button></form>")


@router.post("/consent/{token}", response_class=HTMLResponse, summary="Accept or refuse")
async def consent_answer(token: str, ctx: ContactsDep, answer: str = Form(pattern="^(yes|no)$")) -> HTMLResponse:
    """A "no" closes the address campaign-wide, even when the volunteer
    deleted the contact meanwhile; only the person takes it back, through
    this same link (usecases/answer_link.py)."""
    payload = ctx.keys.links.verify("consent", token)  # InvalidLink: a 400 page
    outcome = await answer_invitation(ctx, payload, yes=answer == "yes")
    if outcome is Answer.gone:
        return page("Ce contact n'existe plus", "This contact no longer exists", status=410)
    if outcome is Answer.closed:
        return page("Cette adresse ne reçoit plus rien de cette campagne",
                    "This address receives nothing more from this campaign",
                    "<p>Vous vous êtes désinscrit(e), ou nos courriels vous sont revenus : cela reste valable.</p>"
                    "<p lang=en>You unsubscribed, or our emails came back undelivered: that stays in force.</p>")
    if answer == "yes":
        return page("Merci, c'est noté", "Thank you, noted")
    return page("C'est noté : vous ne recevrez rien de cette campagne",
                "Noted: you will receive nothing from this campaign",
                "<p>Aucun bénévole ne pourra plus vous inviter ni vous écrire par Maillage. "
                "Si vous changez d'avis, ce même lien vous permet d'accepter.</p>"
                "<p lang=en>No volunteer can invite you or write to you through Maillage any more. "
                "If you change your mind, this same link lets you accept.</p>")
