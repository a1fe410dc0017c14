"""What the routes share: the caller and their role, errors in one shape."""

from __future__ import annotations

from collections.abc import Callable

import structlog
from fastapi import Depends, HTTPException, Request, status
from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.engine import Engine
from sqlmodel import select

from services.feed import content
from services.feed.domain import BOOTSTRAP, Actor, Problem, Role, TransitionError, role_allows
from services.feed.settings import FeedSettings
from services.feed.store import StaffAccount
from shared.auth import Authenticator, Principal, bearer_token, hash_token, same_token, unauthorized
from shared.db import in_session

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
            select(StaffAccount).where(StaffAccount.token_hash == digest, StaffAccount.revoked_at.is_(None))
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


def settings(request: Request) -> FeedSettings:
    return request.app.state.settings


def limits(request: Request) -> tuple[content.ChannelLimit, ...]:
    s = settings(request)
    return content.channel_limits(x=s.limit_x, bluesky=s.limit_bluesky, mastodon=s.limit_mastodon)


def refused(problems: list[Problem]) -> HTTPException:
    """A 422 shaped like FastAPI's own, one entry per problem; counted and
    logged by rule and field (never the text itself)."""
    for rule in {p.kind for p in problems}:
        REFUSED.labels(rule).inc()
    log.info("message.refused", fields=[".".join(map(str, p.loc)) for p in problems])
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[
        {"loc": ["body", *p.loc], "msg": p.msg, "type": "value_error"} for p in problems])


def invalid(exc: ValidationError) -> HTTPException:
    """A pydantic error on a body we validated ourselves (a merged edit)."""
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=[
        {"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_input=False)])


def conflict(exc: TransitionError) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail=str(exc))


def not_found(what: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no such {what}")


def unavailable(detail: str) -> HTTPException:
    """NATS did not take an event (its exception type only: never a payload)."""
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=detail)
