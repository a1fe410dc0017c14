"""The accounts a volunteer connects, kept like their contacts:
credentials and handle sealed with the volunteer's data key, opened only
to seal them again into a dispatch job (``shared.sealed``) when the
volunteer relays. Nothing here returns or logs a secret.

Mastodon, Bluesky and X are social accounts: a relay posts on each. The
email identity (network "email") is their own SMTP account: not a channel
of its own, it changes how the email channel is sent (``relaying``).

Every address a volunteer gives here (instance, PDS, SMTP server) is
stored as its origin only and passes the egress policy (``shared.egress``)
before it is kept: a refused one is a 422 naming the field. dispatch checks
it again at every connection, since a name may resolve elsewhere later."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from functools import partial
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
)
from sqlmodel import Session, col, select

from services.contacts.book import Book
from services.contacts.store import NetworkAccount
from shared.egress import EgressPolicy, EgressRefused, Origin, origin_text
from shared.events import Channel, utcnow
from shared.outcomes import OutcomeKind
from shared.smtp_identity import SmtpIdentity
from shared.text import HeaderText

SOCIAL = (Channel.mastodon, Channel.bluesky, Channel.x)
NETWORKS = (*SOCIAL, Channel.email)  # what /me/networks knows: the social accounts and the email identity
APP_PASSWORD = re.compile(r"[a-z0-9]{4}(-[a-z0-9]{4}){3}")
Handle = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Token = Annotated[SecretStr, Field(min_length=8, max_length=2000)]
DisplayName = Annotated[HeaderText, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]  # From:
# An https origin, nothing more: a path, query, fragment or user would let a
# volunteer choose what the dispatcher asks of whoever answers there.
OriginUrl = Annotated[str, StringConstraints(max_length=300), AfterValidator(origin_text)]


class _Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    def secret_fields(self) -> dict:
        """The credentials in clear, for sealing (never for a response)."""
        return {k: v.get_secret_value() if isinstance(v, SecretStr) else (str(v) if v is not None else None)
                for k, v in self}


class MastodonCredentials(_Credentials):
    instance_url: OriginUrl = Field(description="your instance's address only, e.g. https://mastodon.social")
    access_token: Token = Field(description="an access token with the write:statuses scope")
    handle: Handle | None = Field(default=None, description="shown back to you, e.g. @alice@mastodon.social")


class BlueskyCredentials(_Credentials):
    handle: Handle = Field(description="e.g. alice.bsky.social")
    app_password: SecretStr = Field(description="an app password (Settings → App passwords), never your password")
    service_url: OriginUrl | None = Field(default=None, description="your PDS's address only, if not bsky.social")

    @field_validator("app_password")
    @classmethod
    def _app_password(cls, value: SecretStr) -> SecretStr:
        # An account's own password would work too, and would give us the
        # whole account: only the xxxx-xxxx-xxxx-xxxx shape of an app password is taken.
        if not APP_PASSWORD.fullmatch(value.get_secret_value()):
            raise ValueError("an app password looks like xxxx-xxxx-xxxx-xxxx (Settings → Privacy and security → App passwords)")
        return value


class XCredentials(_Credentials):
    access_token: Token = Field(description="an OAuth 2.0 user access token with tweet.write")
    handle: Handle | None = Field(default=None, description="shown back to you, e.g. @alice")


class EmailIdentity(_Credentials, SmtpIdentity):
    """Their own SMTP account: emails go out from their address, through their server."""

    display_name: DisplayName | None = Field(default=None,
                                             description="the name your contacts see; else your name here")


CREDENTIALS: dict[Channel, type[_Credentials]] = {
    Channel.mastodon: MastodonCredentials, Channel.bluesky: BlueskyCredentials, Channel.x: XCredentials,
    Channel.email: EmailIdentity,
}


class NetworkStatus(BaseModel):
    network: Channel
    connected: bool
    handle: str | None = None
    host: str | None = Field(default=None, description="email identity: the SMTP server")
    from_address: str | None = Field(default=None, description="email identity: the address emails come from")
    since: datetime | None = None
    problem: str | None = Field(default=None, description="token_revoked: the network refused it, reconnect")


def parse(network: Channel, body: dict) -> _Credentials:
    """Raises ValidationError naming the field (never echoing its value)."""
    return CREDENTIALS[network].model_validate(body)


async def refused_addresses(creds: _Credentials, policy: EgressPolicy) -> list[dict]:
    """422 details, one per field whose address the egress policy refuses
    (empty: every address may be kept). Resolves names: awaited outside the
    book's session."""
    details: list[dict] = []

    async def check(field: str, tls_field: str, origin_of: Callable[[], Origin]) -> None:
        try:
            found = origin_of()
            await policy.check_input(found.host, found.port)
        except EgressRefused as exc:  # the message names the rule, never a resolved address
            details.append({"loc": ["body", tls_field if exc.rule == "scheme" else field],
                            "msg": str(exc), "type": OutcomeKind.egress_refused.value})

    for name in ("instance_url", "service_url"):
        if url := getattr(creds, name, None):
            await check(name, name, partial(policy.check_origin, url))
    if isinstance(creds, EmailIdentity):
        await check("host", "security", lambda: Origin(
            "smtp", policy.check_smtp(creds.host, creds.port, creds.security), creds.port))
    return details


def validation_detail(exc: ValidationError) -> list[dict]:
    return [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_input=False, include_url=False, include_context=False)]


def _record(network: Channel) -> str:
    return f"network:{network.value}"


def connect(session: Session, book: Book, network: Channel, creds: _Credentials) -> NetworkStatus:
    row = NetworkAccount(volunteer_id=book.volunteer_id, network=network.value, sealed=book.cipher.seal(
        _record(network), {"credentials": creds.secret_fields(), "handle": getattr(creds, "handle", None)}))
    session.merge(row)  # connecting again replaces the account and clears a revocation
    return status_of(book, row, network)


def status_of(book: Book, row: NetworkAccount | None, network: Channel) -> NetworkStatus:
    if row is None:
        return NetworkStatus(network=network, connected=False)
    opened = book.cipher.open(_record(network), row.sealed)
    shown = ({"host": opened["credentials"]["host"], "from_address": opened["credentials"]["from_address"]}
             if network == Channel.email else {})  # never the username or the password
    return NetworkStatus(network=network, connected=row.revoked_at is None, handle=opened["handle"],
                         since=row.connected_at, problem=OutcomeKind.token_revoked.value if row.revoked_at else None, **shown)


def account(session: Session, volunteer_id: str, network: Channel) -> NetworkAccount | None:
    return session.get(NetworkAccount, (volunteer_id, network.value))


def disconnect(session: Session, volunteer_id: str, network: Channel) -> bool:
    row = account(session, volunteer_id, network)
    if row is None:
        return False
    session.delete(row)
    return True


def connected_credentials(session: Session, book: Book) -> dict[Channel, dict]:
    """The working social accounts' credentials, in clear, for a relay to seal into post jobs."""
    rows = session.exec(select(NetworkAccount).where(NetworkAccount.volunteer_id == book.volunteer_id,
                                                     col(NetworkAccount.network).in_([c.value for c in SOCIAL]),
                                                     col(NetworkAccount.revoked_at).is_(None))).all()
    return {Channel(r.network): book.cipher.open(_record(Channel(r.network)), r.sealed)["credentials"] for r in rows}


def email_identity(session: Session, book: Book) -> EmailIdentity | None:
    """The volunteer's own SMTP account, if connected: their relay's emails go through it."""
    row = account(session, book.volunteer_id, Channel.email)
    if row is None or row.revoked_at is not None:
        return None
    return EmailIdentity.model_validate(book.cipher.open(_record(Channel.email), row.sealed)["credentials"])


def mark_revoked(session: Session, volunteer_id: str, network: Channel, at: datetime | None = None) -> None:
    """The network refused the credentials: the account stops being used
    until the volunteer connects it again."""
    row = account(session, volunteer_id, network)
    if row is not None and row.revoked_at is None:
        row.revoked_at = at or utcnow()
        session.add(row)
