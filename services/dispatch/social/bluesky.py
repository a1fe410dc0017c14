"""Bluesky: an app-password session, then ``com.atproto.repo.createRecord``
of an ``app.bsky.feed.post``.

- Sessions (``createSession``) are cached per credential: Bluesky limits
  logins far more tightly than posts. The cache key is the PDS origin, the
  handle AND a keyed hash of the app password, so a session serves only the
  password that opened it: another volunteer naming the same handle with a
  made-up password misses the cache, logs in, and is refused. An
  ``ExpiredToken`` answer refreshes the session (``refreshSession``), or
  logs in again if that fails too.
- A wrong or revoked app password (401 on login) is ``token_revoked``.
- The post is cut to 300 graphemes and its links are marked as facets
  (UTF-8 byte offsets): Bluesky shows plain text otherwise.
- The record key is derived from the job, so a redelivered job first asks
  (``getRecord``) whether its post already exists, and never posts twice.
- ``RateLimit-Remaining``/``-Reset`` (epoch seconds) are read on every
  answer; a 429 waits until the reset.
- The PDS is the volunteer's to name: only its origin is used, through the
  egress policy (``shared.egress``); an address it refuses is a permanent
  ``egress_refused``, nothing sent."""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from dataclasses import dataclass

import httpx

from services.dispatch.social.domain import (
    EGRESS_REFUSED,
    POSTED,
    REVOKED,
    Outcome,
    Window,
    classify,
    fit,
    link_facets,
    record_key,
    retry_after,
)
from shared.egress import EgressRefused, require_pinned
from shared.events import Channel, SocialPostJob
from shared.postlength import graphemes

BLUESKY_LIMIT = 300
POST = "app.bsky.feed.post"
SESSION_ERRORS = {"ExpiredToken", "InvalidToken"}
MAX_SESSIONS = 10_000  # the least recently used beyond this logs in again
SessionKey = tuple[str, str, bytes]  # (PDS origin, handle, keyed hash of the app password)


@dataclass
class Session:
    did: str
    access: str
    refresh: str


class LoginRefused(Exception):
    """The handle and app password no longer open a session."""


class BlueskyPoster:
    channel = Channel.bluesky

    def __init__(self, http: httpx.AsyncClient, *, service_url: str = "https://bsky.social") -> None:
        self.http = http
        self.egress = require_pinned(http)
        self.service_url = service_url
        self._sessions: OrderedDict[SessionKey, Session] = OrderedDict()
        # A process-local key: the cache holds no password, nor a plain hash
        # of one that could be guessed offline from a memory dump.
        self._hash_key = os.urandom(32)

    def _key(self, service: str, handle: str, password: str) -> SessionKey:
        return service, handle, hmac.new(self._hash_key, password.encode(), hashlib.sha256).digest()

    def _keep(self, key: SessionKey, session: Session) -> Session:
        self._sessions[key] = session
        self._sessions.move_to_end(key)
        while len(self._sessions) > MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return session

    def _xrpc(self, service: str, method: str) -> str:
        return f"{service}/xrpc/{method}"

    async def _login(self, service: str, handle: str, password: str, key: SessionKey) -> Session | httpx.Response:
        r = await self.http.post(self._xrpc(service, "com.atproto.server.createSession"),
                                 json={"identifier": handle, "password": password})
        if r.status_code == 401:
            raise LoginRefused
        if r.status_code != 200:
            return r  # rate-limited or down: the caller turns it into an outcome
        body = r.json()
        return self._keep(key, Session(body["did"], body["accessJwt"], body["refreshJwt"]))

    async def _refresh(self, service: str, handle: str, password: str, key: SessionKey,
                       old: Session) -> Session | httpx.Response:
        r = await self.http.post(self._xrpc(service, "com.atproto.server.refreshSession"),
                                 headers={"Authorization": f"Bearer {old.refresh}"})
        if r.status_code == 200:
            body = r.json()
            return self._keep(key, Session(body["did"], body["accessJwt"], body["refreshJwt"]))
        return await self._login(service, handle, password, key)

    async def _exists(self, service: str, session: Session, rkey: str) -> bool:
        r = await self.http.get(self._xrpc(service, "com.atproto.repo.getRecord"),
                                params={"repo": session.did, "collection": POST, "rkey": rkey})
        return r.status_code == 200

    def _record(self, job: SocialPostJob) -> dict:
        text = fit(job.text, job.link, BLUESKY_LIMIT, graphemes)
        record: dict[str, object] = {"$type": POST, "text": text, "createdAt": job.occurred_at.isoformat().replace("+00:00", "Z")}
        if facets := link_facets(text):
            record["facets"] = facets
        return record

    async def post(self, job: SocialPostJob, creds: dict, *, retried: bool = False) -> tuple[Outcome, Window | None]:
        handle, password = creds["handle"], creds["app_password"]
        rkey = record_key(job.job_id, job.occurred_at)
        try:
            # the stored URL is re-read as an origin: whatever else it carries never reaches a request
            service = self.egress.check_origin(creds.get("service_url") or self.service_url).url
            key = self._key(service, handle, password)
            session = self._sessions.get(key) or await self._login(service, handle, password, key)
            if isinstance(session, httpx.Response):
                return self._answer(session)
            if retried and await self._exists(service, session, rkey):
                return POSTED, None
            r = await self._create(service, session, rkey, job)
            if r.status_code == 401 or _error(r) in SESSION_ERRORS:  # the session, not the account, expired
                self._sessions.pop(key, None)
                session = await self._refresh(service, handle, password, key, session)
                if isinstance(session, httpx.Response):
                    return self._answer(session)
                r = await self._create(service, session, rkey, job)
            return self._answer(r)
        except LoginRefused:
            self._sessions.pop(key, None)
            return REVOKED, None
        except EgressRefused:
            return EGRESS_REFUSED, None

    async def _create(self, service: str, session: Session, rkey: str, job: SocialPostJob) -> httpx.Response:
        return await self.http.post(
            self._xrpc(service, "com.atproto.repo.createRecord"),
            json={"repo": session.did, "collection": POST, "rkey": rkey, "record": self._record(job)},
            headers={"Authorization": f"Bearer {session.access}"},
        )

    def _answer(self, r: httpx.Response) -> tuple[Outcome, Window]:
        now = time.time()
        window = Window.read(r.headers, "ratelimit-remaining", "ratelimit-reset", now)
        if r.status_code == 429:
            return Outcome(classify(429).verdict, "rate_limited", retry_after(r.headers, "ratelimit-reset", now)), window
        if r.status_code == 401 or _error(r) in SESSION_ERRORS:
            return REVOKED, window
        if r.status_code == 400:
            return Outcome(classify(400).verdict, f"rejected: {_error(r) or 'InvalidRequest'}"[:200]), window
        return classify(r.status_code), window


def _error(r: httpx.Response) -> str | None:
    """XRPC errors name themselves: ``{"error": "ExpiredToken", ...}``."""
    if r.status_code < 400:
        return None
    try:
        error = r.json().get("error")
    except ValueError:
        return None
    return error if isinstance(error, str) and error.isidentifier() else None
