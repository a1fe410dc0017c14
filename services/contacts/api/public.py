"""Pages a contact reaches from an email, with no account: one-click
unsubscribe (RFC 8058) and consent answers. The signed link is the proof;
it carries ids and an address hash, never the address."""

from __future__ import annotations

import html

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session

from services.contacts import book as book_ops
from services.contacts.api.deps import keys
from services.contacts.api.accounts import publish_profile
from services.contacts.book import open_book
from services.contacts.domain import Consent, ConsentSource
from services.contacts.store import Contact, ConsentRecord, Volunteer
from shared.catalogue import SUPPRESSION_ADDED
from shared.db import in_session
from shared.events import Suppressed
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


async def suppress(request: Request, payload: dict, reason: str) -> None:
    """Withdraw the contact's consent and add the address hash to the
    campaign-wide suppression list, then tell every dispatcher."""
    k = keys(request)

    def record(session: Session) -> None:
        book_ops.suppress_address(session, payload["b"], reason)
        contact = session.get(Contact, payload["c"])
        vol = session.get(Volunteer, payload["v"])
        if contact is not None and vol is not None and vol.wrapped_key is not None:
            book = open_book(session, k.master, k.index, vol)
            book_ops.set_consent(session, book, contact.id, Consent.withdrawn, ConsentSource.unsubscribe)
            session.commit()

    await in_session(request.app.state.engine, record)
    event = Suppressed(address_hash=payload["b"], reason=reason)
    await request.app.state.bus.publish(SUPPRESSION_ADDED, event, msg_id=f"suppressed:{payload['b']}")
    await publish_profile(request, payload["v"])


@router.get("/u/{token}", response_class=HTMLResponse, summary="Unsubscribe page")
async def unsubscribe_page(token: str, request: Request) -> HTMLResponse:
    # GET never unsubscribes: mail scanners follow links.
    keys(request).links.verify("unsubscribe", token)  # InvalidLink: a 400 page
    return page("Ne plus recevoir ces messages", "Stop receiving these messages",
                "<form method=post><input type=hidden name=List-Unsubscribe value=One-Click>"
                "<button type=submit>Me désinscrire / Unsubscribe</button></form>")


@router.post("/u/{token}", response_class=HTMLResponse, summary="One-click unsubscribe (RFC 8058)")
async def unsubscribe(token: str, request: Request) -> HTMLResponse:
    """``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` lands here. It
    stops every message of the campaign to this address, from any volunteer."""
    payload = keys(request).links.verify("unsubscribe", token)  # InvalidLink: a 400 page
    await suppress(request, payload, "unsubscribe")
    return page("C'est fait : vous ne recevrez plus rien de cette campagne",
                "Done: you will receive nothing more from this campaign")


@router.get("/consent/{token}", response_class=HTMLResponse, summary="Answer an invitation")
async def consent_page(token: str, request: Request) -> HTMLResponse:
    keys(request).links.verify("consent", token)  # InvalidLink: a 400 page
    return page("Recevoir ses messages ?", "Receive their messages?",
                "<form method=post><button name=answer value=yes>Oui / Yes</button> "
                "<button name=answer value=no>Non / No</button></form>")


@router.post("/consent/{token}", response_class=HTMLResponse, summary="Accept or refuse")
async def consent_answer(token: str, request: Request, answer: str = Form(pattern="^(yes|no)$")) -> HTMLResponse:
    """A "no" closes the address campaign-wide (every book: no invitation,
    no relay, no volunteer may confirm it), even when the volunteer deleted
    the contact meanwhile. Only the person takes it back: a later "yes"
    through this same link reopens it, unless they also unsubscribed or
    the address bounced, which stay for good."""
    k = keys(request)
    payload = k.links.verify("consent", token)  # InvalidLink: a 400 page
    target = Consent.confirmed if answer == "yes" else Consent.withdrawn

    def record(session: Session) -> str:
        vol = session.get(Volunteer, payload["v"])
        record = session.get(ConsentRecord, (payload["c"], payload["ch"]))
        exists = vol is not None and vol.wrapped_key is not None and record is not None
        book = open_book(session, k.master, k.index, vol) if exists else None
        blind = payload.get("b")
        if blind is None and exists:  # a link made before it carried the address hash
            blind = next(iter(book_ops.email_blinds(session, payload["c"])), None)
        if target is Consent.withdrawn and blind is not None:
            book_ops.suppress_address(session, blind, book_ops.REFUSED)
        if not exists:
            return "refused" if target is Consent.withdrawn and blind is not None else "gone"
        if target is Consent.confirmed and blind is not None and not book_ops.lift_refusal(session, blind):
            session.rollback()
            return "closed"
        book_ops.set_consent(session, book, payload["c"], target, ConsentSource.contact)
        session.commit()
        return "done"

    outcome = await in_session(request.app.state.engine, record)
    if outcome == "gone":
        return page("Ce contact n'existe plus", "This contact no longer exists", status=410)
    if outcome == "closed":
        return page("Cette adresse ne reçoit plus rien de cette campagne",
                    "This address receives nothing more from this campaign",
                    "<p>Vous vous êtes désinscrit(e), ou nos courriels vous sont revenus : cela reste valable.</p>"
                    "<p lang=en>You unsubscribed, or our emails came back undelivered: that stays in force.</p>")
    if outcome == "done":
        await publish_profile(request, payload["v"])
    if target is Consent.confirmed:
        return page("Merci, c'est noté", "Thank you, noted")
    return page("C'est noté : vous ne recevrez rien de cette campagne",
                "Noted: you will receive nothing from this campaign",
                "<p>Aucun bénévole ne pourra plus vous inviter ni vous écrire par Maillage. "
                "Si vous changez d'avis, ce même lien vous permet d'accepter.</p>"
                "<p lang=en>No volunteer can invite you or write to you through Maillage any more. "
                "If you change your mind, this same link lets you accept.</p>")
