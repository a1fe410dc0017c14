"""X: ``POST /2/tweets`` with the volunteer's OAuth 2.0 user token.

- The post is fitted to 280 weighted characters (a link weighs 23).
- X has no idempotency key, but refuses the same text twice in a row with a
  403 "duplicate content": on a redelivered job that means our first try
  went through, so it counts as posted (on a first try: "duplicate").
- A 429 waits until ``x-rate-limit-reset`` (epoch seconds); a 401 means
  the token was revoked or expired.
- The API URL is the operator's, not a volunteer's; it still goes through
  the same pinned client, so a misconfigured one cannot reach inside."""

from __future__ import annotations

import time

import httpx

from services.dispatch.social.domain import EGRESS_REFUSED, POSTED, Outcome, Verdict, Window, classify, fit, retry_after
from shared.egress import EgressRefused, require_pinned
from shared.events import Channel, SocialPostJob
from shared.postlength import x_length

X_LIMIT = 280


def _duplicate(r: httpx.Response) -> bool:
    try:
        return "duplicate" in str(r.json().get("detail", "")).lower()
    except ValueError:
        return False


class XPoster:
    channel = Channel.x

    def __init__(self, http: httpx.AsyncClient, *, api_url: str = "https://api.x.com") -> None:
        self.http = http
        # refused at start (a crash naming the setting), not at every job
        self.api_url = require_pinned(http).check_origin(api_url).url

    async def post(self, job: SocialPostJob, creds: dict, *, retried: bool = False) -> tuple[Outcome, Window | None]:
        try:
            r = await self.http.post(
                f"{self.api_url}/2/tweets",
                json={"text": fit(job.text, job.link, X_LIMIT, x_length)},
                headers={"Authorization": f"Bearer {creds['access_token']}"},
            )
        except EgressRefused:  # its name now resolves to an address the policy refuses
            return EGRESS_REFUSED, None
        now = time.time()
        window = Window.read(r.headers, "x-rate-limit-remaining", "x-rate-limit-reset", now)
        if r.status_code == 403 and _duplicate(r):  # our own earlier try went through; else the volunteer's
            return (POSTED if retried else Outcome(Verdict.failed, "duplicate")), window
        outcome = classify(r.status_code)
        if r.status_code == 403:  # not a revoked token on X: the app or account may not post
            outcome = Outcome(Verdict.failed, "forbidden")
        if r.status_code == 429:
            outcome = Outcome(outcome.verdict, "rate_limited", retry_after(r.headers, "x-rate-limit-reset", now))
        return outcome, window
