"""Volunteer accounts: the campaign invites (with or without creating the
account), the volunteer redeems a code, asks for a sign-in link when they
lost access, signs out everywhere.

What the provisioning token can do, and why no more: it creates accounts
and invitations, and that is all. It never sets, re-issues or learns a
volunteer's credential: a token it chose or saw would read that book for as
long as it lived. An invitation is redeemed by whoever holds its code, once,
and only ever creates the account's first credential; a volunteer who lost
access asks for a sign-in link, which goes to the address the account
already has, and redeeming it revokes every older token and session."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import func, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from services.contacts import domain, outbound
from services.contacts.errors import CodeRefused, Conflict
from services.contacts.store import Invite, SignInLink, Volunteer
from services.contacts.usecases._unit import Contacts, unit
from shared.auth import hash_token, new_token
from shared.db import in_session
from shared.events import Channel, OpenedEmailJob, utcnow
from shared.sealed import seal_email
from shared.web.session import WebSession

log = structlog.get_logger(__name__)

# Unused sign-in links an account may have at once: asking again and again
# must not turn the campaign's relay into a way to flood someone's inbox.
LIVE_SIGN_IN_LINKS = 3
EMAIL_TAKEN = ("an account with this address already exists; nothing was changed. A volunteer who lost "
               "access asks for a sign-in link themselves (POST /auth/recover)")
CODE_REFUSED = "code: this invitation is unknown, used or expired"


@dataclass(frozen=True)
class Invited:
    code: str
    invite_url: str
    expires_at: datetime
    volunteer_id: str | None


def erased(vol: Volunteer) -> bool:
    return vol.wrapped_key is None and vol.key_version is not None


def never_signed_in(vol: Volunteer) -> bool:
    """Created by the campaign, its invitation not redeemed yet: no
    credential, no book key."""
    return vol.token_hash is None and vol.key_version is None


def new_credential(session: Session, vol: Volunteer, token: str) -> None:
    """The account's token becomes ``token``; every older token and web
    session stops working (the epoch moves), every unused sign-in link too."""
    vol.token_hash = hash_token(token)
    vol.session_epoch = (vol.session_epoch or 0) + 1
    session.exec(update(SignInLink).where(col(SignInLink.volunteer_id) == vol.id, col(SignInLink.used_at).is_(None))
                 .values(used_at=utcnow()))
    session.add(vol)


async def invite(ctx: Contacts, display_name: str, email: str, *, account: bool) -> Invited:
    """A single-use invitation, only for an address that has no account
    yet; with ``account``, the account exists at once (scripted onboarding)."""
    code = secrets.token_urlsafe(24)
    expires = utcnow() + timedelta(days=ctx.settings.invite_days)
    email = email.lower()

    def save(session: Session) -> str | None:
        if session.exec(select(Volunteer.id).where(Volunteer.email == email)).first() is not None:
            raise Conflict.on("email", EMAIL_TAKEN)
        vol = Volunteer(display_name=display_name, email=email) if account else None
        if vol is not None:
            session.add(vol)
            session.flush()  # the account first: an invite never points at nothing
        session.add(Invite(code_hash=hash_token(code), display_name=display_name, email=email,
                           expires_at=expires, volunteer_id=vol.id if vol else None))
        return vol.id if vol else None

    try:
        volunteer_id = await unit(ctx.engine, save)
    except IntegrityError as exc:  # the same address, created concurrently
        raise Conflict.on("email", EMAIL_TAKEN) from exc
    return Invited(code, f"{ctx.settings.public_url}/join#{code}", expires, volunteer_id)


async def redeem(engine: Engine, code: str) -> tuple[Volunteer, str]:
    """An invitation creates the account's first credential, never a
    second: for an address that already has an account (signed in before,
    or erased) it is refused and nothing changes. A sign-in link issues a
    new token and revokes every older token and web session. The account
    and its new token."""
    token = new_token("vol")
    digest = hash_token(code)

    def use(session: Session) -> Volunteer:
        now = utcnow()
        # Claim the code atomically: of two concurrent redemptions, one wins.
        claimed = session.exec(update(Invite).where(
            col(Invite.code_hash) == digest, col(Invite.redeemed_at).is_(None), col(Invite.expires_at) > now,
        ).values(redeemed_at=now)).rowcount
        if claimed == 1:
            invite = session.exec(select(Invite).where(Invite.code_hash == digest)).one()
            vol = session.exec(select(Volunteer).where(Volunteer.email == invite.email)).first()
            made_for_it = vol is not None and invite.volunteer_id == vol.id and never_signed_in(vol)
            if vol is not None and not made_for_it:
                raise Conflict.on("code", "this invitation's address already has an account; nothing was changed. "
                                          "Sign in, or ask for a sign-in link by email")
            vol = vol or Volunteer(display_name=invite.display_name, email=invite.email)
            invite.volunteer_id = vol.id
            session.add(invite)
        else:
            session.rollback()
            claimed = session.exec(update(SignInLink).where(
                col(SignInLink.code_hash) == digest, col(SignInLink.used_at).is_(None), col(SignInLink.expires_at) > now,
            ).values(used_at=now)).rowcount
            if claimed != 1:
                raise CodeRefused(CODE_REFUSED)
            link = session.exec(select(SignInLink).where(SignInLink.code_hash == digest)).one()
            vol = session.get(Volunteer, link.volunteer_id)
            if vol is None or erased(vol):
                raise CodeRefused(CODE_REFUSED)
        new_credential(session, vol, token)
        return vol

    try:
        vol = await unit(engine, use)
    except IntegrityError as exc:  # two invitations for one new address, redeemed at once: one account
        raise Conflict.on("code", "this invitation's address already has an account; nothing was changed") from exc
    return vol, token


async def send_sign_in_link(ctx: Contacts, email: str) -> None:
    """Lost access: a single-use, short-lived sign-in link goes to the
    address the account already has. Runs after the answer is sent, which
    says nothing of whether the address has an account: so nothing here
    may fail loudly (ops get the error's type, never the address)."""
    cfg, k = ctx.settings, ctx.keys
    code = secrets.token_urlsafe(24)
    now = utcnow()

    def issue(session: Session) -> tuple[Volunteer, SignInLink] | None:
        vol = session.exec(select(Volunteer).where(Volunteer.email == email)).first()
        if vol is None or erased(vol):
            return None
        live = session.exec(select(func.count()).select_from(SignInLink).where(
            col(SignInLink.volunteer_id) == vol.id, col(SignInLink.used_at).is_(None), col(SignInLink.expires_at) > now)).one()
        if live >= LIVE_SIGN_IN_LINKS:
            return None
        link = SignInLink(code_hash=hash_token(code), volunteer_id=vol.id,
                          expires_at=now + timedelta(minutes=cfg.sign_in_link_minutes))
        session.add(link)
        session.flush()
        return vol, link

    try:
        issued = await unit(ctx.engine, issue)
        if issued is None:
            return
        vol, link = issued
        blind = k.index.email(vol.email)
        # the one-click unsubscribe every campaign mail carries (no contact: the address itself)
        unsubscribe = k.links.sign("unsubscribe", {"v": vol.id, "c": "", "b": blind})
        subject, text = sign_in_email(campaign=cfg.campaign_name, url=f"{cfg.public_url}/join#{code}",
                                      minutes=cfg.sign_in_link_minutes)
        job = seal_email(OpenedEmailJob(
            kind="sign_in", job_id=f"sign-in-{link.id}", relay_id="sign-in", message_id="sign-in",
            volunteer_id=vol.id, sender_name=cfg.campaign_name[:200], reply_to=vol.email,
            recipient_name=domain.header_name(vol.display_name), recipient_email=vol.email, recipient_hash=blind,
            subject=subject, body_text=text, unsubscribe_url=f"{cfg.public_url}/u/{unsubscribe}",
        ), ctx.sealer[Channel.email])
        await outbound.email_job(ctx.bus, job)
    except Exception as exc:
        log.warning("sign_in_link.failed", error=type(exc).__name__)


def sign_in_email(*, campaign: str, url: str, minutes: int) -> tuple[str, str]:
    subject = f"Votre lien de connexion à {campaign} / Your sign-in link"
    text = (
        f"Quelqu'un (vous, sans doute) a demandé un lien de connexion à votre espace bénévole de {campaign}.\n"
        f"Ce lien marche une fois, pendant {minutes} minutes : {url}\n"
        f"L'utiliser déconnecte toutes vos autres sessions et remplace votre ancien jeton. "
        f"Si ce n'était pas vous, ignorez ce message : rien ne change.\n\n"
        f"---\nSomeone (you, probably) asked for a link to sign in to your volunteer space for {campaign}. "
        f"It works once, for {minutes} minutes: {url}\nUsing it signs out every other session and replaces "
        f"your old token. If it was not you, ignore this message: nothing changes."
    )
    return subject, text


async def sign_out_everywhere(engine: Engine, session: WebSession) -> None:
    """Every session of this volunteer ends, on every device. Only a
    current session may do it (compare-and-set on the epoch it carries), so
    a stale or copied-then-revoked cookie changes nothing."""

    def bump(s: Session) -> None:
        vol = s.get(Volunteer, session.sub)
        if vol is not None and session.current(vol.token_hash, vol.session_epoch):
            s.exec(update(Volunteer).where(col(Volunteer.id) == vol.id, col(Volunteer.session_epoch) == session.ep)
                   .values(session_epoch=Volunteer.session_epoch + 1))

    await unit(engine, bump)


async def signed_in_volunteer(engine: Engine, volunteer_id: str) -> Volunteer | None:
    return await in_session(engine, lambda s: s.get(Volunteer, volunteer_id))
