"""Volunteer accounts: invitations from the campaign, sign-in, recovery of
a lost access by the volunteer themselves, the opt-in profile, and erasure
of a whole book.

What the provisioning token can do, and why no more: it creates accounts
and invitations, and that is all. It never sets, re-issues or learns a
volunteer's credential: a token it chose or saw would read that book for as
long as it lived. An invitation is redeemed by whoever holds its code, once,
and only ever creates the account's first credential; a volunteer who lost
access asks for a sign-in link, which goes to the address the account
already has, and redeeming it revokes every older token and session."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import structlog
from fastapi import APIRouter, BackgroundTasks, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from services.contacts import book as book_ops
from services.contacts import auto_relay, domain
from services.contacts.api.deps import PROVISIONER, current_volunteer, settings
from services.contacts.store import Invite, SignInLink, Volunteer
from shared.auth import hash_token, new_token, require
from shared.catalogue import EMAIL_JOB, PROFILE_UPDATED
from shared.db import in_session
from shared.events import Channel, InterestName, InterestProfile, OpenedEmailJob, utcnow
from shared.sealed import seal_email
from shared.text import HeaderText

log = structlog.get_logger(__name__)

admin = APIRouter(prefix="/admin", tags=["provisioning"], dependencies=[Depends(require(PROVISIONER))])
public = APIRouter(tags=["sign-in"])
router = APIRouter(tags=["my account"])

# Unused sign-in links an account may have at once: asking again and again
# must not turn the campaign's relay into a way to flood someone's inbox.
LIVE_SIGN_IN_LINKS = 3


class InviteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    display_name: HeaderText = Field(min_length=1, max_length=200)
    email: EmailStr


class InviteOut(BaseModel):
    invite_url: str
    code: str
    expires_at: datetime


class RedeemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=16, max_length=200, description="an invitation's code, or a sign-in link's")


class RecoverIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr


class RecoverOut(BaseModel):
    detail: str


class VolunteerIn(BaseModel):
    # extra=forbid: a "token" field (the old way to seed a known token) is a
    # 422 naming it, not silently ignored
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    display_name: HeaderText = Field(min_length=1, max_length=200)
    email: EmailStr


class VolunteerInvited(InviteOut):
    volunteer_id: str


class VolunteerCreated(BaseModel):
    volunteer_id: str
    token: str


class Me(BaseModel):
    volunteer_id: str
    display_name: str
    shared_interests: list[str] | None


class SharingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shared_interests: list[InterestName] | None = Field(
        description="interests whose counts you share with the campaign; null shares all"
    )
    auto_relay_interests: list[InterestName] | None = Field(
        default=None,
        description="shared campaign interests whose suggestions are relayed for you, without a click, "
        "under the same rules as a click; [] turns auto-relay off; omitted or null keeps your choice "
        "(minus the interests you no longer share)",
    )


class MyProfile(InterestProfile):
    """The profile the campaign sees, and your auto-relay choice (yours
    only: it is never published)."""

    auto_relay_interests: list[str] = Field(default_factory=list)


def taken(field: str, msg: str) -> HTTPException:
    """A 409 shaped like a validation error, naming the field."""
    return HTTPException(status.HTTP_409_CONFLICT, detail=[{"loc": ["body", field], "msg": msg, "type": "conflict"}])


EMAIL_TAKEN = ("an account with this address already exists; nothing was changed. A volunteer who lost "
               "access asks for a sign-in link themselves (POST /auth/recover)")
CODE_REFUSED = "code: this invitation is unknown, used or expired"


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
    session.exec(update(SignInLink).where(SignInLink.volunteer_id == vol.id, SignInLink.used_at.is_(None))
                 .values(used_at=utcnow()))
    session.add(vol)


# -- the campaign invites, the volunteer signs in ------------------------------------------


def _email_free(session: Session, email: str) -> None:
    if session.exec(select(Volunteer.id).where(Volunteer.email == email)).first() is not None:
        raise taken("email", EMAIL_TAKEN)


async def _invite(request: Request, body: InviteIn | VolunteerIn, account: bool) -> VolunteerInvited:
    code = secrets.token_urlsafe(24)
    expires = utcnow() + timedelta(days=settings(request).invite_days)
    email = str(body.email).lower()

    def save(session: Session) -> str | None:
        _email_free(session, email)
        vol = Volunteer(display_name=body.display_name, email=email) if account else None
        if vol is not None:
            session.add(vol)
            session.flush()  # the account first: an invite never points at nothing
        session.add(Invite(code_hash=hash_token(code), display_name=body.display_name, email=email,
                           expires_at=expires, volunteer_id=vol.id if vol else None))
        session.commit()
        return vol.id if vol else None

    try:
        volunteer_id = await in_session(request.app.state.engine, save)
    except IntegrityError as exc:  # the same address, created concurrently
        raise taken("email", EMAIL_TAKEN) from exc
    return VolunteerInvited(invite_url=f"{settings(request).public_url}/join#{code}", code=code,
                            expires_at=expires, volunteer_id=volunteer_id or "")


@admin.post("/invites", status_code=status.HTTP_201_CREATED, summary="Invite a volunteer",
            responses={409: {"description": "this address already has an account"}})
async def invite_volunteer(body: InviteIn, request: Request) -> InviteOut:
    """A single-use link: opened by the volunteer, it becomes their API
    token. Only for an address that has no account yet (409 naming email)."""
    invited = await _invite(request, body, account=False)
    return InviteOut(**invited.model_dump(exclude={"volunteer_id"}))


@admin.post("/volunteers", status_code=status.HTTP_201_CREATED, summary="Create a volunteer account and its invitation",
            responses={409: {"description": "this address already has an account; nothing was changed"}})
async def create_volunteer(body: VolunteerIn, request: Request) -> VolunteerInvited:
    """For scripted onboarding: the account exists at once (its id is
    returned) and the volunteer signs in through the invitation, which the
    caller passes on. No token is returned or accepted: the provisioner
    never holds a credential that reads a book."""
    return await _invite(request, body, account=True)


@public.post("/auth/redeem", summary="Turn an invitation code or a sign-in link into my API token",
             responses={400: {"description": "unknown, used or expired code"},
                        409: {"description": "the invitation's address already has an account"}})
async def redeem(body: RedeemIn, request: Request) -> VolunteerCreated:
    """An invitation creates the account's first credential, never a
    second: for an address that already has an account (signed in before,
    or erased) it is refused and nothing changes. A sign-in link (mailed
    to the account's own address, POST /auth/recover) issues a new token
    and revokes every older token and web session."""
    token = new_token("vol")
    digest = hash_token(body.code)

    def use(session: Session) -> Volunteer | None:
        now = utcnow()
        # Claim the code atomically: of two concurrent redemptions, one wins.
        claimed = session.execute(update(Invite).where(
            Invite.code_hash == digest, Invite.redeemed_at.is_(None), Invite.expires_at > now,
        ).values(redeemed_at=now)).rowcount
        if claimed == 1:
            invite = session.exec(select(Invite).where(Invite.code_hash == digest)).one()
            vol = session.exec(select(Volunteer).where(Volunteer.email == invite.email)).first()
            made_for_it = vol is not None and invite.volunteer_id == vol.id and never_signed_in(vol)
            if vol is not None and not made_for_it:
                session.rollback()
                raise taken("code", "this invitation's address already has an account; nothing was changed. "
                                    "Sign in, or ask for a sign-in link by email")
            vol = vol or Volunteer(display_name=invite.display_name, email=invite.email)
            invite.volunteer_id = vol.id
            session.add(invite)
        else:
            session.rollback()
            claimed = session.execute(update(SignInLink).where(
                SignInLink.code_hash == digest, SignInLink.used_at.is_(None), SignInLink.expires_at > now,
            ).values(used_at=now)).rowcount
            if claimed != 1:
                session.rollback()
                return None
            link = session.exec(select(SignInLink).where(SignInLink.code_hash == digest)).one()
            vol = session.get(Volunteer, link.volunteer_id)
            if vol is None or erased(vol):
                session.rollback()
                return None
        new_credential(session, vol, token)
        session.commit()
        return vol

    try:
        vol = await in_session(request.app.state.engine, use)
    except IntegrityError as exc:  # two invitations for one new address, redeemed at once: one account
        raise taken("code", "this invitation's address already has an account; nothing was changed") from exc
    if vol is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=CODE_REFUSED)
    return VolunteerCreated(volunteer_id=vol.id, token=token)


RECOVER_ANSWER = "if this address belongs to an account, a single-use sign-in link is on its way to it"


@public.post("/auth/recover", status_code=status.HTTP_202_ACCEPTED, summary="Email me a sign-in link")
async def recover(body: RecoverIn, request: Request, background: BackgroundTasks) -> RecoverOut:
    """Lost access: a single-use, short-lived sign-in link goes to the
    address the account already has, never to one given here. The answer
    is the same whether the address has an account or not, and the work is
    done after the answer is sent, so neither its words nor its timing say
    which (no account enumeration)."""
    background.add_task(send_sign_in_link, request.app, str(body.email).lower())
    return RecoverOut(detail=RECOVER_ANSWER)


async def send_sign_in_link(app, email: str) -> None:
    cfg, k = app.state.settings, app.state.keys
    code = secrets.token_urlsafe(24)
    now = utcnow()

    def issue(session: Session) -> tuple[Volunteer, SignInLink] | None:
        vol = session.exec(select(Volunteer).where(Volunteer.email == email)).first()
        if vol is None or erased(vol):
            return None
        live = session.exec(select(func.count()).select_from(SignInLink).where(
            SignInLink.volunteer_id == vol.id, SignInLink.used_at.is_(None), SignInLink.expires_at > now)).one()
        if live >= LIVE_SIGN_IN_LINKS:
            return None
        link = SignInLink(code_hash=hash_token(code), volunteer_id=vol.id,
                          expires_at=now + timedelta(minutes=cfg.sign_in_link_minutes))
        session.add(link)
        session.commit()
        return vol, link

    try:
        issued = await in_session(app.state.engine, issue)
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
        ), app.state.sealer[Channel.email])
        await app.state.bus.publish(EMAIL_JOB, job, msg_id=job.job_id)
    except Exception as exc:  # the caller already has its answer; ops get the type, never the address
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


# -- my account ------------------------------------------------------------------------


async def current_profile(request: Request, volunteer_id: str) -> InterestProfile:
    """Counts of confirmed contacts per shared interest: all that leaves."""

    def compute(session: Session) -> InterestProfile:
        vol = session.get(Volunteer, volunteer_id)
        shared = set(vol.shared_interests) if vol.shared_interests is not None else None
        views = book_ops.views(session, volunteer_id)
        regions, locales = domain.place_profile(views)
        return InterestProfile(volunteer_id=volunteer_id, audience=domain.interest_profile(views, shared),
                               regions=regions, locales=locales)

    return await in_session(request.app.state.engine, compute)


async def publish_profile(request: Request, volunteer_id: str) -> InterestProfile:
    profile = await current_profile(request, volunteer_id)
    await request.app.state.bus.publish(PROFILE_UPDATED, profile, volunteer_id, msg_id=profile.event_id)
    return profile


@router.get("/me", summary="Who I am")
async def me(vol: Volunteer = Depends(current_volunteer)) -> Me:
    return Me(volunteer_id=vol.id, display_name=vol.display_name, shared_interests=vol.shared_interests)


async def with_choices(request: Request, profile: InterestProfile) -> MyProfile:
    row = await in_session(request.app.state.engine, lambda s: s.get(Volunteer, profile.volunteer_id))
    return MyProfile(**profile.model_dump(), auto_relay_interests=sorted(auto_relay.effective(row)))


@router.get("/me/profile", summary="What the campaign sees of my network (counts only), and my auto-relay choice")
async def my_profile(request: Request, vol: Volunteer = Depends(current_volunteer)) -> MyProfile:
    return await with_choices(request, await current_profile(request, vol.id))


@router.put("/me/profile", summary="Choose which interests I share and auto-relay, and publish my profile")
async def share_profile(body: SharingIn, request: Request, vol: Volunteer = Depends(current_volunteer)) -> MyProfile:
    def save(session: Session) -> None:
        row = session.get(Volunteer, vol.id)
        shared = sorted(set(body.shared_interests)) if body.shared_interests is not None else None
        if body.auto_relay_interests is not None:
            auto = set(body.auto_relay_interests)
            in_force = None if shared is None else set(shared)
            if problem := auto_relay.choice_problem(auto, in_force, book_ops.taxonomy(session)):
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[
                    {"loc": ["body", "auto_relay_interests"], "msg": problem, "type": "value_error"}])
        else:  # keep the choice, as far as it is still shared
            kept = set(row.auto_relay_interests or ())
            auto = kept if shared is None else kept & set(shared)
        row.shared_interests = shared
        row.auto_relay_interests = sorted(auto) or None
        session.add(row)
        session.commit()

    await in_session(request.app.state.engine, save)
    return await with_choices(request, await publish_profile(request, vol.id))


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT, summary="Erase my whole book and my account")
async def erase_me(request: Request, vol: Volunteer = Depends(current_volunteer)) -> Response:
    """Destroys the book's key first (crypto-shredding), then its rows, and
    publishes an empty profile so no suggestion targets it again."""

    def erase(session: Session) -> None:
        book_ops.erase_volunteer(session, vol.id)
        session.exec(delete(SignInLink).where(SignInLink.volunteer_id == vol.id))
        # the token is gone with the key; the epoch ends every web session too
        session.exec(update(Volunteer).where(Volunteer.id == vol.id)
                     .values(session_epoch=Volunteer.session_epoch + 1))
        session.commit()

    await in_session(request.app.state.engine, erase)
    empty = InterestProfile(volunteer_id=vol.id, audience={})
    await request.app.state.bus.publish(PROFILE_UPDATED, empty, vol.id, msg_id=empty.event_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
