"""A local stand-in for Mastodon, Bluesky and X, run on a free port: it
implements the documented endpoints the social dispatchers call, their
error answers (401 revoked token, 400 ExpiredToken, 403 duplicate, 422
too long, 429 with Retry-After or reset headers) and their rate-limit
headers, so the adapters are tested offline against real HTTP.

One server plays all three: a Mastodon instance at its root, a Bluesky
PDS under /xrpc, the X API under /2."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.postlength import graphemes, mastodon_length, x_length
from tools.stack import free_port


@dataclass
class Window:
    """A fixed rate-limit window per token, as the networks run them."""

    limit: int = 300
    seconds: float = 300.0
    used: dict[str, int] = field(default_factory=dict)
    reset_at: float = field(default_factory=lambda: time.time() + 300.0)

    def spend(self, who: str) -> int:
        if time.time() >= self.reset_at:
            self.used.clear()
            self.reset_at = time.time() + self.seconds
        self.used[who] = self.used.get(who, 0) + 1
        return max(0, self.limit - self.used[who])


@dataclass
class FakeSocial:
    url: str = ""
    # Mastodon
    mastodon_tokens: set[str] = field(default_factory=set)
    max_characters: int | None = 500  # None: the instance does not say (an old version)
    statuses: list[dict] = field(default_factory=list)
    idempotency: dict[tuple[str, str], dict] = field(default_factory=dict)
    instance_asked: int = 0
    # Bluesky
    bsky_passwords: dict[str, str] = field(default_factory=dict)  # handle -> app password
    access: dict[str, str] = field(default_factory=dict)  # accessJwt -> did
    refresh: dict[str, str] = field(default_factory=dict)  # refreshJwt -> did
    records: dict[tuple[str, str], dict] = field(default_factory=dict)
    logins: int = 0
    login_attempts: list[tuple[str, bool]] = field(default_factory=list)  # (handle, right password?)
    refreshes: int = 0
    # X
    x_tokens: set[str] = field(default_factory=set)
    tweets: list[dict] = field(default_factory=list)
    # every network
    window: Window = field(default_factory=Window)
    throttle: int = 0  # the next N posts answer 429
    retry_after: str | None = "2"  # what a 429 says (None: only the reset header)
    fail_5xx: int = 0  # the next N posts answer 503
    calls: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self) -> str:
        """This server as a MAILLAGE_EGRESS_ALLOW entry: the tests reach it through
        the allow-list, as `make run` reaches its fakes, never through a hole in the policy."""
        return self.url.removeprefix("http://")

    def did(self, handle: str) -> str:
        return f"did:plc:{handle.split('.')[0]}"

    def expire_sessions(self) -> None:
        """Every access token now answers ExpiredToken (refresh tokens still work)."""
        self.access.clear()

    # -- shared ---------------------------------------------------------------------

    def _limited(self, who: str, names: tuple[str, str, str], reset_as_iso: bool = False) -> JSONResponse | dict:
        remaining = self.window.spend(who)
        reset = (datetime.fromtimestamp(self.window.reset_at, timezone.utc).isoformat().replace("+00:00", "Z")
                 if reset_as_iso else str(int(self.window.reset_at)))
        headers = {names[0]: str(self.window.limit), names[1]: str(remaining), names[2]: reset}
        if self.throttle > 0 or remaining <= 0 and self.window.used[who] > self.window.limit:
            self.throttle = max(0, self.throttle - 1)
            if self.retry_after is not None:
                headers["Retry-After"] = self.retry_after
            return JSONResponse({"error": "Too many requests"}, 429, headers)
        if self.fail_5xx > 0:
            self.fail_5xx -= 1
            return JSONResponse({"error": "unavailable"}, 503, headers)
        return headers

    # -- Mastodon ---------------------------------------------------------------------

    async def instance(self, request: Request) -> JSONResponse:
        self.instance_asked += 1
        config = {"statuses": {"max_characters": self.max_characters}} if self.max_characters else {}
        return JSONResponse({"domain": "127.0.0.1", "configuration": config})

    async def post_status(self, request: Request) -> JSONResponse:
        self.calls.append("mastodon.statuses")
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.mastodon_tokens:
            return JSONResponse({"error": "The access token was revoked"}, 401)
        headers = self._limited(token, ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"),
                                reset_as_iso=True)
        if isinstance(headers, JSONResponse):
            return headers
        key = request.headers.get("idempotency-key")
        if key and (token, key) in self.idempotency:
            return JSONResponse(self.idempotency[(token, key)], 200, headers)
        body = await request.json()
        if mastodon_length(body.get("status", "")) > (self.max_characters or 500):
            return JSONResponse({"error": "Validation failed: Text character limit exceeded"}, 422, headers)
        status = {"id": str(len(self.statuses) + 1), "content": body["status"], "visibility": body.get("visibility")}
        with self.lock:
            self.statuses.append(status)
            if key:
                self.idempotency[(token, key)] = status
        return JSONResponse(status, 200, headers)

    # -- Bluesky ------------------------------------------------------------------------

    def _session(self, handle: str) -> dict:
        did = self.did(handle)
        access, refresh = secrets.token_hex(8), secrets.token_hex(8)
        self.access[access], self.refresh[refresh] = did, did
        return {"did": did, "handle": handle, "accessJwt": access, "refreshJwt": refresh}

    async def create_session(self, request: Request) -> JSONResponse:
        self.logins += 1
        body = await request.json()
        handle = body.get("identifier", "")
        right = handle in self.bsky_passwords and self.bsky_passwords[handle] == body.get("password")
        self.login_attempts.append((handle, right))
        if not right:
            return JSONResponse({"error": "AuthenticationRequired", "message": "Invalid identifier or password"}, 401)
        return JSONResponse(self._session(handle))

    async def refresh_session(self, request: Request) -> JSONResponse:
        self.refreshes += 1
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        did = self.refresh.pop(token, None)
        handle = next((h for h in self.bsky_passwords if self.did(h) == did), None)
        if handle is None:
            return JSONResponse({"error": "ExpiredToken", "message": "Token has expired"}, 400)
        return JSONResponse(self._session(handle))

    def _bsky_auth(self, request: Request) -> str | JSONResponse:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        did = self.access.get(token)
        if did is None:
            return JSONResponse({"error": "ExpiredToken", "message": "Token has expired"}, 400)
        handle = next((h for h in self.bsky_passwords if self.did(h) == did), None)
        if handle is None:  # the app password was revoked since the login
            return JSONResponse({"error": "AuthenticationRequired", "message": "Invalid token"}, 401)
        return did

    async def create_record(self, request: Request) -> JSONResponse:
        self.calls.append("bluesky.createRecord")
        did = self._bsky_auth(request)
        if isinstance(did, JSONResponse):
            return did
        headers = self._limited(did, ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"))
        if isinstance(headers, JSONResponse):
            return headers
        body = await request.json()
        record = body["record"]
        if body.get("repo") != did or body.get("collection") != "app.bsky.feed.post":
            return JSONResponse({"error": "InvalidRequest", "message": "bad repo or collection"}, 400, headers)
        if graphemes(record.get("text", "")) > 300:
            return JSONResponse({"error": "InvalidRequest", "message": "Record/text must not be longer than 300 graphemes"}, 400, headers)
        text = record["text"].encode()
        for facet in record.get("facets", []):  # offsets must point at the link, in UTF-8 bytes
            i = facet["index"]
            if text[i["byteStart"]:i["byteEnd"]].decode() != facet["features"][0]["uri"]:
                return JSONResponse({"error": "InvalidRequest", "message": "facet offsets"}, 400, headers)
        rkey = body.get("rkey") or secrets.token_hex(6)
        if (did, rkey) in self.records:
            return JSONResponse({"error": "InvalidRequest", "message": "record already exists"}, 400, headers)
        self.records[(did, rkey)] = record
        return JSONResponse({"uri": f"at://{did}/app.bsky.feed.post/{rkey}", "cid": "bafy"}, 200, headers)

    async def get_record(self, request: Request) -> JSONResponse:
        q = request.query_params
        record = self.records.get((q.get("repo"), q.get("rkey")))
        if record is None:
            return JSONResponse({"error": "RecordNotFound", "message": "Could not locate record"}, 400)
        return JSONResponse({"uri": f"at://{q['repo']}/app.bsky.feed.post/{q['rkey']}", "value": record})

    # -- X ------------------------------------------------------------------------------

    async def create_tweet(self, request: Request) -> JSONResponse:
        self.calls.append("x.tweets")
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if token not in self.x_tokens:
            return JSONResponse({"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}, 401)
        headers = self._limited(token, ("x-rate-limit-limit", "x-rate-limit-remaining", "x-rate-limit-reset"))
        if isinstance(headers, JSONResponse):
            return headers
        text = (await request.json())["text"]
        if x_length(text) > 280:
            return JSONResponse({"detail": "Your Tweet text is too long.", "status": 400}, 400, headers)
        if any(t["text"] == text and t["token"] == token for t in self.tweets):
            return JSONResponse({"detail": "You are not allowed to create a Tweet with duplicate content.",
                                 "type": "about:blank", "title": "Forbidden", "status": 403}, 403, headers)
        self.tweets.append({"text": text, "token": token})
        return JSONResponse({"data": {"id": str(len(self.tweets)), "text": text}}, 201, headers)

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/api/v2/instance", self.instance),
            Route("/api/v1/statuses", self.post_status, methods=["POST"]),
            Route("/xrpc/com.atproto.server.createSession", self.create_session, methods=["POST"]),
            Route("/xrpc/com.atproto.server.refreshSession", self.refresh_session, methods=["POST"]),
            Route("/xrpc/com.atproto.repo.createRecord", self.create_record, methods=["POST"]),
            Route("/xrpc/com.atproto.repo.getRecord", self.get_record),
            Route("/2/tweets", self.create_tweet, methods=["POST"]),
        ])


class Served:
    """Runs a FakeSocial with uvicorn in a thread, on a free port."""

    def __init__(self, fake: FakeSocial) -> None:
        self.fake = fake
        port = free_port()
        fake.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(fake.app(), host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> FakeSocial:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake social server did not start")
            time.sleep(0.02)
        return self.fake

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
