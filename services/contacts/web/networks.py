"""My networks: connect Mastodon, Bluesky, X and an email identity (their
own SMTP account) with what each needs, see what is connected (never a
secret), disconnect. The forms are built from the API's own credential
models, so they ask for exactly what it takes."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse
from typing import Literal, get_args, get_origin

from pydantic import EmailStr, SecretStr

from services.contacts.api.deps import ContactsDep
from services.contacts.api.networks import EgressDep
from services.contacts.networks import CREDENTIALS
from services.contacts.store import Volunteer
from services.contacts.usecases import connect_network
from services.contacts.usecases._unit import Contacts
from services.contacts.web.auth import web_volunteer
from services.contacts.web.refusals import REFUSALS, refusal
from shared.web.pages import render, site_of
from shared.web.session import csrf_protect

router = APIRouter(prefix="/app/networks", include_in_schema=False, dependencies=[Depends(csrf_protect)])


def form_fields() -> dict[str, list[dict]]:
    """Per network: each field's name, whether it is required, its input
    type (a secret is a password field) and, for a choice, its choices."""
    return {channel.value: [{"name": name, "required": info.is_required(), **_input(info.annotation)}
                            for name, info in model.model_fields.items()]
            for channel, model in CREDENTIALS.items()}


def _input(annotation) -> dict:
    if get_origin(annotation) is Literal:
        return {"type": "select", "choices": list(get_args(annotation))}
    types = _types(annotation)
    # the browser's own checks and keyboards: digits for a port, @ for an address
    kind = next((k for t, k in ((SecretStr, "password"), (int, "number"), (EmailStr, "email")) if t in types), "text")
    return {"type": kind}


def _types(annotation) -> set:
    args = getattr(annotation, "__args__", ())
    return {annotation, *args, *(a for arg in args for a in getattr(arg, "__args__", ()))}


async def page(request: Request, ctx: Contacts, vol: Volunteer, status_code: int = 200, **extra):
    statuses = await connect_network.statuses(ctx, vol)
    return render(request, "networks.html", status_code, statuses=statuses, fields=form_fields(), **extra)


@router.get("")
async def networks_page(request: Request, ctx: ContactsDep, vol: Volunteer = Depends(web_volunteer)):
    return await page(request, ctx, vol)


@router.post("/{network}")
async def connect(network: str, request: Request, ctx: ContactsDep, policy: EgressDep,
                  vol: Volunteer = Depends(web_volunteer)):
    form = await request.form()
    body = {k: v.strip() for k, v in form.items() if k != "csrf" and isinstance(v, str) and v.strip()}
    try:
        await connect_network.connect(ctx, vol, network, body, policy)
    except REFUSALS as exc:
        code, errors = refusal(exc)
        return await page(request, ctx, vol, code, errors=errors)
    return RedirectResponse(f"{site_of(request).prefix}/networks", status_code=303)


@router.post("/{network}/disconnect")
async def disconnect(network: str, request: Request, ctx: ContactsDep, vol: Volunteer = Depends(web_volunteer)):
    await connect_network.disconnect(ctx, vol, network)
    return RedirectResponse(f"{site_of(request).prefix}/networks", status_code=303)
