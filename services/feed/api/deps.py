"""What the routes share: typed dependencies (the engine, the bus, the
settings, the caller and their role) and what domain errors mean over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import structlog
from fastapi import Depends, HTTPException, Request, status
from prometheus_client import Counter
from sqlalchemy.engine import Engine
from sqlmodel import col, select

from services.feed import content
from services.feed.domain import BOOTSTRAP, Actor, Role, role_allows
from services.feed.errors import Invalid, NotFound, Refused, TransitionError, Unavailable
from services.feed.settings import FeedSettings
from services.feed.store import StaffAccount
from shared.auth import Authenticator, Principal, bearer_token, hash_token, same_token, unauthorized
from shared.messaging import Bus
from shared.db import in_session
from shared.web.errors import Answers, not_found

log = structlog.get_logger(__name__)

REFUSED = Counter("maillage_feed_messages_refused_total", "Messages refused by a rule, by rule.", ["rule"])


def staff_authenticator(engine: Engine, bootstrap_token_hash: str) -> Authenticator:
    """The bootstrap token is an admin; every other token is a staff
    account's, looked up by its hash, and stops working once revoked."""

    async def authenticate(token: str) -> Principal | None:
        if same_token(token, bootstrap_token_hash):
            return Principal(BOOTSTRAP.role, BOOTSTRAP)
        digest = hash_token(token)
        account = await in_session(engine, lambda s: s.exec(
            select(StaffAccount).where(StaffAccount.token_hash == digest, col(StaffAccount.revoked_at).is_(None))
        ).first())
        if account is None:
            return None
        return Principal(account.role, Actor(id=account.id, name=account.name, role=account.role))

    return authenticate


def require_role(needed: Role) -> Callable[..., Actor]:
    """A route dependency: the caller, whose role is ``needed`` or higher.
    No valid token: 401; a valid token of too low a role: 403."""

    def dependency(request: Request, _token: str = Depends(bearer_token)) -> Actor:
        principal = getattr(request.state, "principal", None)
        if principal is None or not isinstance(principal.account, Actor):
            raise unauthorized()
        if not role_allows(principal.role, needed):
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                detail=f"this needs the {needed} role (or higher); this account is {principal.role}")
        return principal.account

    return dependency


def engine(request: Request) -> Engine:
    return request.app.state.engine


def bus(request: Request) -> Bus:
    return request.app.state.bus


def settings(request: Request) -> FeedSettings:
    return request.app.state.settings


def limits(request: Request) -> tuple[content.ChannelLimit, ...]:
    s = settings(request)
    return content.channel_limits(x=s.limit_x, bluesky=s.limit_bluesky, mastodon=s.limit_mastodon)


EngineDep = Annotated[Engine, Depends(engine)]
BusDep = Annotated[Bus, Depends(bus)]
SettingsDep = Annotated[FeedSettings, Depends(settings)]
LimitsDep = Annotated[tuple[content.ChannelLimit, ...], Depends(limits)]
Editor = Annotated[Actor, Depends(require_role(Role.editor))]
Publisher = Annotated[Actor, Depends(require_role(Role.publisher))]
Admin = Annotated[Actor, Depends(require_role(Role.admin))]


def refused(exc: Refused) -> HTTPException:
    """A 422 shaped like FastAPI's own, one entry per problem; counted and
    logged by rule and field (never the text itself)."""
    for rule in {p.kind for p in exc.problems}:
        REFUSED.labels(rule).inc()
    log.info("message.refused", fields=[".".join(map(str, p.loc)) for p in exc.problems])
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[
        {"loc": ["body", *p.loc], "msg": p.msg, "type": "value_error"} for p in exc.problems])


def invalid(exc: Invalid) -> HTTPException:
    """A pydantic error on a body we validated ourselves (a merged edit)."""
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[
        {"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]} for err in exc.errors])


# What each domain error means over HTTP: app.py installs it (shared.web.errors).
ANSWERS: Answers = {
    NotFound: lambda exc: not_found(exc.what),
    TransitionError: lambda exc: HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)),
    Refused: refused,
    Invalid: invalid,
    # NATS did not take an event (its exception type only: never a payload)
    Unavailable: lambda exc: HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)),
}
