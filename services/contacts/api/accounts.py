"""Volunteer accounts: invitations from the campaign, sign-in, recovery of
a lost access by the volunteer themselves, the opt-in profile, and erasure
of a whole book. What the provisioning token may do, and why no more:
usecases/provisioning.py."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, BackgroundTasks, Depends, Response, status
from pydantic import BaseModel, ConfigDict, EmailStr, Field

from services.contacts.api.deps import PROVISIONER, ContactsDep, CurrentVolunteer
from services.contacts.usecases import provisioning
from services.contacts.usecases.erase_me import erase_me as erase
from services.contacts.usecases.share_profile import my_profile as load_profile
from services.contacts.usecases.share_profile import share_profile as share
from shared.auth import require
from shared.events import InterestName, InterestProfile
from shared.text import HeaderText

admin = APIRouter(prefix="/admin", tags=["provisioning"], dependencies=[Depends(require(PROVISIONER))])
public = APIRouter(tags=["sign-in"])
router = APIRouter(tags=["my account"])


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


async def _invite(ctx, body: InviteIn | VolunteerIn, account: bool) -> VolunteerInvited:
    invited = await provisioning.invite(ctx, body.display_name, str(body.email), account=account)
    return VolunteerInvited(invite_url=invited.invite_url, code=invited.code, expires_at=invited.expires_at,
                            volunteer_id=invited.volunteer_id or "")


@admin.post("/invites", status_code=status.HTTP_201_CREATED, summary="Invite a volunteer",
            responses={409: {"description": "this address already has an account"}})
async def invite_volunteer(body: InviteIn, ctx: ContactsDep) -> InviteOut:
    """A single-use link: opened by the volunteer, it becomes their API
    token. Only for an address that has no account yet (409 naming email)."""
    invited = await _invite(ctx, body, account=False)
    return InviteOut(**invited.model_dump(exclude={"volunteer_id"}))


@admin.post("/volunteers", status_code=status.HTTP_201_CREATED, summary="Create a volunteer account and its invitation",
            responses={409: {"description": "this address already has an account; nothing was changed"}})
async def create_volunteer(body: VolunteerIn, ctx: ContactsDep) -> VolunteerInvited:
    """For scripted onboarding: the account exists at once (its id is
    returned) and the volunteer signs in through the invitation, which the
    caller passes on. No token is returned or accepted: the provisioner
    never holds a credential that reads a book."""
    return await _invite(ctx, body, account=True)


@public.post("/auth/redeem", summary="Turn an invitation code or a sign-in link into my API token",
             responses={400: {"description": "unknown, used or expired code"},
                        409: {"description": "the invitation's address already has an account"}})
async def redeem(body: RedeemIn, ctx: ContactsDep) -> VolunteerCreated:
    """An invitation creates the account's first credential, never a
    second: for an address that already has an account (signed in before,
    or erased) it is refused and nothing changes. A sign-in link (mailed
    to the account's own address, POST /auth/recover) issues a new token
    and revokes every older token and web session."""
    vol, token = await provisioning.redeem(ctx.engine, body.code)
    return VolunteerCreated(volunteer_id=vol.id, token=token)


RECOVER_ANSWER = "if this address belongs to an account, a single-use sign-in link is on its way to it"


@public.post("/auth/recover", status_code=status.HTTP_202_ACCEPTED, summary="Email me a sign-in link")
async def recover(body: RecoverIn, ctx: ContactsDep, background: BackgroundTasks) -> RecoverOut:
    """Lost access: a single-use, short-lived sign-in link goes to the
    address the account already has, never to one given here. The answer
    is the same whether the address has an account or not, and the work is
    done after the answer is sent, so neither its words nor its timing say
    which (no account enumeration)."""
    background.add_task(provisioning.send_sign_in_link, ctx, str(body.email).lower())
    return RecoverOut(detail=RECOVER_ANSWER)


# -- my account ------------------------------------------------------------------------


@router.get("/me", summary="Who I am")
async def me(vol: CurrentVolunteer) -> Me:
    return Me(volunteer_id=vol.id, display_name=vol.display_name, shared_interests=vol.shared_interests)


def with_choices(profile: InterestProfile, auto: list[str]) -> MyProfile:
    return MyProfile(**profile.model_dump(), auto_relay_interests=auto)


@router.get("/me/profile", summary="What the campaign sees of my network (counts only), and my auto-relay choice")
async def my_profile(ctx: ContactsDep, vol: CurrentVolunteer) -> MyProfile:
    return with_choices(*await load_profile(ctx, vol.id))


@router.put("/me/profile", summary="Choose which interests I share and auto-relay, and publish my profile")
async def share_profile(body: SharingIn, ctx: ContactsDep, vol: CurrentVolunteer) -> MyProfile:
    return with_choices(*await share(ctx, vol.id, body.shared_interests, body.auto_relay_interests))


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT, summary="Erase my whole book and my account")
async def erase_me(ctx: ContactsDep, vol: CurrentVolunteer) -> Response:
    """Destroys the book's key first (crypto-shredding), then its rows, and
    publishes an empty profile so no suggestion targets it again."""
    await erase(ctx, vol.id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
