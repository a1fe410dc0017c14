"""Web sessions: an HttpOnly, SameSite=Strict cookie holding a signed,
expiring payload — who (an id, never a name or address), a fingerprint of
the credential it came from, the account's session epoch when it was
opened, and the session's CSRF token. Nothing about a session is readable
by page scripts, and nothing goes in browser storage.

Why signed cookies rather than a session table: revocation still works,
because every request re-checks the cookie against the account's row —
the fingerprint against its current credential (a revoked staff token or a
re-issued volunteer token ends every session built on it) and the epoch
against its current epoch (sign-out, erasure and a new credential bump it,
ending every session of the account at once, on every replica, since they
all read the same row). A captured cookie is worth nothing after sign-out,
and at most ``max_age`` (hours, not weeks) before."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import HTTPException, Request, Response, status

from shared.links import InvalidLink, LinkSigner
from shared.web.forms import field

CSRF_FIELD, CSRF_HEADER = "csrf", "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def derive_key(secret: bytes, purpose: str) -> bytes:
    """A key of its own for sessions, from a secret the service already holds."""
    return hmac.new(secret, f"maillage-web-session:{purpose}".encode(), hashlib.sha256).digest()


def fingerprint(credential_hash: str | None) -> str:
    return hashlib.sha256(f"fp:{credential_hash}".encode()).hexdigest()[:24]


@dataclass(frozen=True)
class WebSession:
    csrf: str
    sub: str | None = None  # the signed-in account's id (None: not signed in yet)
    fp: str | None = None
    ep: int | None = None  # the account's session epoch when signed in

    def current(self, credential_hash: str | None, epoch: int) -> bool:
        """Signed in, and still valid against the account's row as it is now."""
        return (self.sub is not None and credential_hash is not None and self.ep == epoch
                and hmac.compare_digest(fingerprint(credential_hash), self.fp or ""))


class Sessions:
    def __init__(self, key: bytes, *, cookie: str, path: str, secure: bool, max_age: int) -> None:
        """``cookie``: each client its own name, because browsers share
        cookies across ports (the console and the app on one host in a
        local run must not overwrite each other's)."""
        self._signer = LinkSigner(key)
        self.cookie, self.path, self.secure, self.max_age = cookie, path, secure, max_age

    def read(self, request: Request) -> WebSession | None:
        """The cookie's session, or None for anything that is not one we
        signed and still in date: a browser or an attacker may send any
        bytes (non-ASCII, truncated, garbage), and each reads as "no session"
        (the sign-in page), never as an error."""
        return self.read_value(request.cookies.get(self.cookie))

    def read_value(self, raw: str | None) -> WebSession | None:
        if not raw:
            return None
        try:  # verify turns every malformed token (non-ASCII, overlong, bad parts or JSON) into InvalidLink
            data = self._signer.verify("session", raw)
        except InvalidLink:
            return None
        if not isinstance(data.get("csrf"), str) or not isinstance(data.get("exp"), int):
            return None
        sub, fp, ep = data.get("sub"), data.get("fp"), data.get("ep")
        if sub is not None and not (isinstance(sub, str) and isinstance(fp, str) and type(ep) is int):
            return None
        return WebSession(csrf=data["csrf"], sub=sub, fp=fp, ep=ep)

    @staticmethod
    def new(sub: str | None = None, fp: str | None = None, ep: int | None = None) -> WebSession:
        """A new session, with a new CSRF token: signing in rotates it."""
        return WebSession(csrf=secrets.token_urlsafe(24), sub=sub, fp=fp, ep=ep)

    def store(self, response: Response, session: WebSession) -> None:
        sub, fp = session.sub, session.fp
        payload = {"csrf": session.csrf, **({"sub": sub, "fp": fp, "ep": session.ep} if sub else {})}
        response.set_cookie(self.cookie, self._signer.sign("session", payload, ttl_seconds=self.max_age),
                            max_age=self.max_age, path=self.path, secure=self.secure, httponly=True,
                            samesite="strict")

    def clear(self, response: Response) -> None:
        response.delete_cookie(self.cookie, path=self.path, secure=self.secure, httponly=True, samesite="strict")


def sessions_of(request: Request) -> Sessions:
    return request.app.state.web_sessions


async def csrf_protect(request: Request) -> None:
    """A route dependency: a state-changing request must carry the
    session's CSRF token, in the form's hidden field or the X-CSRF-Token
    header (scripts); otherwise 403."""
    if request.method in SAFE_METHODS:
        return
    session = sessions_of(request).read(request)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and "form" in request.headers.get("content-type", ""):
        sent = field(await request.form(), CSRF_FIELD)
    if session is None or not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            detail="csrf: this form is missing its security token or it expired; reload the page")
