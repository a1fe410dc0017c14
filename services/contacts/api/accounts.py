"""Volunteer accounts: invitations from the campaign, sign-in, the opt-in
profile, and erasure of a whole book."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from fastapi import APIRouter, Depends, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from services.contacts import book as book_ops
from services.contacts import auto_relay, domain
from services.contacts.api.deps import PROVISIONER, conflict, current_volunteer, settings
from services.contacts.store import Invite, Volunteer
from shared.auth import hash_token, new_token, require
from shared.catalogue import PROFILE_UPDATED
from shared.db import in_session
from shared.events import InterestName, InterestProfile, utcnow

admin = APIRouter(prefix="/admin", tags=["provisioning"], dependencies=[Depends(require(PROVISIONER))])
public = APIRouter(tags=["sign-in"])
router = APIRouter(tags=["my account"])


class InviteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    display_name: str = Field(min_length=1, max_length=200)
    email: EmailStr


class InviteOut(BaseModel):
    invite_url: str
    code: str
    expires_at: datetime


class RedeemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=16, max_length=200)


class VolunteerIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    display_name: str = Field(min_length=1, max_length=200)
    email: EmailStr
    token: str | None = Field(
        default=None, min_length=24, max_length=200,
        description="set a known token (demo seeding); omitted, a new one is issued",
    )


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


# -- the campaign invites, the volunteer signs in ------------------------------------------


@admin.post("/invites", status_code=status.HTTP_201_CREATED, summary="Invite a volunteer")
async def invite_volunteer(body: InviteIn, request: Request) -> InviteOut:
    """A single-use link: opened by the volunteer, it becomes their API token."""
    code = secrets.token_urlsafe(24)
    expires = utcnow() + timedelta(days=settings(request).invite_days)

    def save(session: Session) -> None:
        session.add(Invite(code_hash=hash_token(code), display_name=body.display_name,
                           email=str(body.email).lower(), expires_at=expires))
        session.commit()

    await in_session(request.app.state.engine, save)
    return InviteOut(invite_url=f"{settings(request).public_url}/join#{code}", code=code, expires_at=expires)


@public.post("/auth/redeem", summary="Turn an invite code into my API token")
async def redeem(body: RedeemIn, request: Request) -> VolunteerCreated:
    token = new_token("vol")

    def use(session: Session) -> Volunteer | None:
        now = utcnow()
        # Claim the code atomically: of two concurrent redemptions, one wins.
        claimed = session.execute(update(Invite).where(
            Invite.code_hash == hash_token(body.code), Invite.redeemed_at.is_(None), Invite.expires_at > now,
        ).values(redeemed_at=now)).rowcount
        if claimed != 1:
            session.rollback()
            return None
        invite = session.exec(select(Invite).where(Invite.code_hash == hash_token(body.code))).one()
        vol = session.exec(select(Volunteer).where(Volunteer.email == invite.email)).first()
        vol = vol or Volunteer(display_name=invite.display_name, email=invite.email)
        vol.token_hash = hash_token(token)
        invite.volunteer_id = vol.id
        session.add_all([vol, invite])
        session.commit()
        return vol

    vol = await in_session(request.app.state.engine, use)
    if vol is None:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="code: this invitation is unknown, used or expired")
    return VolunteerCreated(volunteer_id=vol.id, token=token)


@admin.post("/volunteers", status_code=status.HTTP_201_CREATED, summary="Create a volunteer account directly")
async def create_volunteer(body: VolunteerIn, request: Request, response: Response) -> VolunteerCreated:
    """For scripted onboarding and demo seeding. An existing email gets a new token."""
    token = body.token or new_token("vol")

    def upsert(session: Session) -> tuple[Volunteer, bool]:
        vol = session.exec(select(Volunteer).where(Volunteer.email == str(body.email).lower())).first()
        created = vol is None
        vol = vol or Volunteer(display_name=body.display_name, email=str(body.email).lower())
        vol.display_name, vol.token_hash = body.display_name, hash_token(token)
        session.add(vol)
        session.commit()
        return vol, created

    try:
        vol, created = await in_session(request.app.state.engine, upsert)
    except IntegrityError as exc:
        raise conflict("token already in use") from exc
    if not created:
        response.status_code = status.HTTP_200_OK
    return VolunteerCreated(volunteer_id=vol.id, token=token)


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
        session.commit()

    await in_session(request.app.state.engine, erase)
    empty = InterestProfile(volunteer_id=vol.id, audience={})
    await request.app.state.bus.publish(PROFILE_UPDATED, empty, vol.id, msg_id=empty.event_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
