"""Mastodon: ``POST /api/v1/statuses`` with the volunteer's token.

- ``Idempotency-Key`` is the job id: Mastodon keeps it an hour, so a job
  redelivered after a lost answer does not post twice.
- The post is fitted to the instance's own limit
  (``GET /api/v2/instance`` → ``configuration.statuses.max_characters``,
  cached per instance).
- ``X-RateLimit-Remaining``/``-Reset`` are read on every answer so the
  worker can pause before the window is spent; a 429 says how long to wait.
- The instance is the volunteer's to name: only its origin is used, through
  the egress policy (``shared.egress``); an address it refuses is a
  permanent ``egress_refused``, nothing sent."""

from __future__ import annotations

import time

import httpx

from services.dispatch.social.domain import EGRESS_REFUSED, Outcome, Window, classify, fit, retry_after
from shared.egress import EgressRefused, require_pinned
from shared.events import Channel, SocialPostJob
from shared.postlength import mastodon_length


class MastodonPoster:
    channel = Channel.mastodon

    def __init__(self, http: httpx.AsyncClient, *, default_limit: int = 500, cache_seconds: float = 3600.0) -> None:
        self.http = http
        self.egress = require_pinned(http)
        self.default_limit = default_limit
        self.cache_seconds = cache_seconds
        self._limits: dict[str, tuple[int, float]] = {}

    async def max_characters(self, instance: str) -> int:
        cached = self._limits.get(instance)
        if cached and time.monotonic() - cached[1] < self.cache_seconds:
            return cached[0]
        try:
            r = await self.http.get(f"{instance}/api/v2/instance")
            limit = int(r.json()["configuration"]["statuses"]["max_characters"]) if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            limit = None
        if limit is None:  # an older or unreachable instance: Mastodon's default, asked again next time
            return self.default_limit
        self._limits[instance] = (limit, time.monotonic())
        return limit

    async def post(self, job: SocialPostJob, creds: dict, *, retried: bool = False) -> tuple[Outcome, Window | None]:
        try:
            # the stored URL is re-read as an origin: whatever else it carries never reaches a request
            instance = self.egress.check_origin(creds["instance_url"]).url
            status = fit(job.text, job.link, await self.max_characters(instance), mastodon_length)
            r = await self.http.post(
                f"{instance}/api/v1/statuses",
                json={"status": status, "visibility": "public"},
                headers={"Authorization": f"Bearer {creds['access_token']}", "Idempotency-Key": job.job_id},
            )
        except EgressRefused:
            return EGRESS_REFUSED, None
        now = time.time()
        window = Window.read(r.headers, "x-ratelimit-remaining", "x-ratelimit-reset", now)
        outcome = classify(r.status_code)
        if r.status_code == 429:
            outcome = Outcome(outcome.verdict, "rate_limited", retry_after(r.headers, "x-ratelimit-reset", now))
        return outcome, window
