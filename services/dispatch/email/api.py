"""``POST /bounces``: the campaign's bounce mailbox (or its MTA's pipe)
hands each delivery status notification to the dispatcher
(``usecases.record_bounces``).

Authenticated with a bearer token from the environment; the body is the
raw DSN (``message/rfc822`` or any type: it is read as bytes). A body that
is not a DSN raises ``NotADsn``, answered 422 by the app's table
(``ANSWERS``)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel

from services.dispatch.email.domain.dsn import NotADsn
from services.dispatch.email.ledger import Ledger
from services.dispatch.email.outbound import Outbound
from services.dispatch.email.settings import EmailDispatchSettings
from services.dispatch.email.usecases.record_bounces import record_bounces
from shared.auth import Principal, require
from shared.web.errors import Answers

MAX_DSN_BYTES = 1024 * 1024
# the app's body limit for this route (shared/web/limits.py): a DSN is never larger
BODY_LIMITS = {"/bounces": MAX_DSN_BYTES}
ROLE = "bounce-reader"
BounceReader = Annotated[Principal, Depends(require(ROLE))]

ANSWERS: Answers = {
    NotADsn: lambda exc: HTTPException(422, f"not a delivery status notification: {exc}"),
}


class BounceSummary(BaseModel):
    hard_bounces: int
    soft_bounces: int
    unknown_jobs: int


def authenticator(settings: EmailDispatchSettings):
    """Unset token: nobody may post bounces (never an open endpoint)."""
    expected = settings.bounce_token.get_secret_value().encode() if settings.bounce_token else None

    async def authenticate(token: str) -> Principal | None:
        if expected and hmac.compare_digest(token.encode(), expected):
            return Principal(ROLE)
        return None

    return authenticate


def router(ledger: Ledger, outbound: Outbound) -> APIRouter:
    api = APIRouter(tags=["bounces"])

    @api.post("/bounces", response_model=BounceSummary, summary="Read one DSN (RFC 3464)",
              responses={413: {"description": "larger than 1 MiB"},
                         422: {"description": "not a delivery status notification"}})
    async def post_bounce(request: Request, _p: BounceReader) -> BounceSummary:
        raw = await request.body()  # at most BODY_LIMITS' bytes: the limit refuses more as it streams in
        count = await record_bounces(raw, ledger, outbound)
        return BounceSummary(hard_bounces=count.hard, soft_bounces=count.soft, unknown_jobs=count.unknown_jobs)

    return api
