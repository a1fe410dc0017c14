"""``POST /bounces``: the campaign's bounce mailbox (or its MTA's pipe)
hands each delivery status notification to the dispatcher, which turns
hard bounces into ``dispatch.email.bounces`` events (job id and address
hash, never the address); contacts then suppresses the address.

Authenticated with a bearer token from the environment; the body is the
raw DSN (``message/rfc822`` or any type: it is read as bytes)."""

from __future__ import annotations

import hmac

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from prometheus_client import Counter
from pydantic import BaseModel

from services.dispatch.email.domain.dsn import NotADsn, read_dsn
from services.dispatch.email.ledger import Ledger
from services.dispatch.email.settings import EmailDispatchSettings
from shared.auth import Principal, require
from shared.messaging import Bus
from shared.catalogue import EMAIL_BOUNCE
from shared.events import BounceReported

log = structlog.get_logger(__name__)

MAX_DSN_BYTES = 1024 * 1024
# the app's body limit for this route (shared/web/limits.py): a DSN is never larger
BODY_LIMITS = {"/bounces": MAX_DSN_BYTES}
ROLE = "bounce-reader"

BOUNCES = Counter("maillage_dispatch_bounces_total",
                  "DSN recipients by kind: hard (suppressed), soft (ignored), unknown_job.", ["kind"])


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


def router(bus: Bus, ledger: Ledger) -> APIRouter:
    api = APIRouter(tags=["bounces"])

    @api.post("/bounces", response_model=BounceSummary, summary="Read one DSN (RFC 3464)",
              responses={413: {"description": "larger than 1 MiB"},
                         422: {"description": "not a delivery status notification"}})
    async def post_bounce(request: Request, _p: Principal = Depends(require(ROLE))) -> BounceSummary:
        raw = await request.body()  # at most BODY_LIMITS' bytes: the limit refuses more as it streams in
        try:
            reading = read_dsn(raw)
        except NotADsn as exc:
            raise HTTPException(422, f"not a delivery status notification: {exc}") from None
        unknown = 0
        for bounce in reading.hard:
            address_hash = await ledger.recipient_of(bounce.job_id)
            if address_hash is None:  # not ours, or older than the ledger keeps
                unknown += 1
                continue
            event = BounceReported(job_id=bounce.job_id, address_hash=address_hash, status=bounce.status)
            await bus.publish(EMAIL_BOUNCE, event, msg_id=f"{bounce.job_id}:bounce")
        hard = len(reading.hard) - unknown
        BOUNCES.labels("hard").inc(hard)
        BOUNCES.labels("soft").inc(reading.soft)
        BOUNCES.labels("unknown_job").inc(unknown)
        log.info("email.dsn", hard=hard, soft=reading.soft, unknown_jobs=unknown)
        return BounceSummary(hard_bounces=hard, soft_bounces=reading.soft, unknown_jobs=unknown)

    return api
