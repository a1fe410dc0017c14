"""What a social post is and what a network's answer means. No I/O: the
adapters feed these functions what they read, the worker acts on what they
return."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from enum import StrEnum

from shared.egress import REASON as EGRESS_REASON
from shared.outcomes import OutcomeKind
from shared.postlength import clip_graphemes, graphemes, links_in, short_post

ELLIPSIS = "…"
TOKEN_REVOKED = OutcomeKind.token_revoked.value  # the reason the volunteer's history shows: reconnect the account
DEFAULT_RETRY_SECONDS = 60.0  # a 429 that says nothing about when: wait a minute


class Verdict(StrEnum):
    posted = "posted"
    retry = "retry"  # 429, 5xx, network: the job is nacked and comes back later
    failed = "failed"  # refused for good (validation, forbidden)
    revoked = "revoked"  # the credentials no longer work: the volunteer must reconnect


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    reason: str | None = None
    retry_after: float | None = None  # seconds, when the network said
    failure: OutcomeKind = OutcomeKind.rejected  # what a ``failed`` verdict reports

    @property
    def kind(self) -> OutcomeKind:
        """What the job's result says became of it (a retry verdict here is
        one the attempts ran out on)."""
        return {Verdict.posted: OutcomeKind.delivered, Verdict.revoked: OutcomeKind.token_revoked,
                Verdict.retry: OutcomeKind.failed_after_retries}.get(self.verdict, self.failure)


POSTED = Outcome(Verdict.posted)
REVOKED = Outcome(Verdict.revoked, TOKEN_REVOKED)
EGRESS_REFUSED = Outcome(Verdict.failed, EGRESS_REASON, failure=OutcomeKind.egress_refused)


# -- the post --------------------------------------------------------------------------------


def fit(text: str, link: str | None, limit: int, measure: Callable[[str], int]) -> str:
    """The text and its link, within ``limit`` as the network measures it.
    Feed already refuses a variant too long for the usual limits, but an
    instance may allow less: then the text is cut (whole graphemes, with an
    ellipsis), never the link."""
    post = short_post(text, link)
    if measure(post) <= limit:
        return post
    body = text.strip()
    if link and link in body:  # the link is inside the text: keep the text whole up to it
        body = body.replace(link, "").strip()
    lo, hi = 0, graphemes(body)
    while lo < hi:  # the longest cut that fits
        mid = (lo + hi + 1) // 2
        if measure(short_post(clip_graphemes(body, mid).rstrip() + ELLIPSIS, link)) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return short_post(clip_graphemes(body, lo).rstrip() + ELLIPSIS, link)


def link_facets(text: str) -> list[dict]:
    """Bluesky does not linkify text itself: each link is a facet whose
    offsets count UTF-8 *bytes* (an é before the link shifts it by two)."""
    facets = []
    for start, end, url in links_in(text):
        byte_start = len(text[:start].encode())
        facets.append({
            "index": {"byteStart": byte_start, "byteEnd": byte_start + len(text[start:end].encode())},
            "features": [{"$type": "app.bsky.richtext.facet#link", "uri": url}],
        })
    return facets


_B32_SORTABLE = "234567abcdefghijklmnopqrstuvwxyz"


def record_key(job_id: str, at: datetime) -> str:
    """A TID (the record key Bluesky posts use) made from the job: its time
    in microseconds and a clock id from the job id. The same job always
    names the same record, so a retry can ask whether it already exists."""
    micros = int(at.timestamp() * 1_000_000)
    clock = int.from_bytes(hashlib.sha256(job_id.encode()).digest()[:2], "big") & 0x3FF
    n = (micros << 10) | clock
    return "".join(_B32_SORTABLE[(n >> (5 * i)) & 31] for i in reversed(range(13)))


# -- rate limits -------------------------------------------------------------------------------


def _epoch(value: str | None, now: float) -> float | None:
    """A reset time as epoch seconds, from what networks send: epoch seconds
    (Bluesky, X) or an ISO 8601 timestamp (Mastodon)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def retry_after(headers: Mapping[str, str], reset_header: str, now: float) -> float:
    """How long a 429 asks us to wait: ``Retry-After`` (seconds or an HTTP
    date), else the window's reset time, else a minute."""
    value = headers.get("retry-after")
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                return max(0.0, parsedate_to_datetime(value).timestamp() - now)
            except (TypeError, ValueError):
                pass
    reset = _epoch(headers.get(reset_header), now)
    return max(1.0, reset - now) if reset is not None else DEFAULT_RETRY_SECONDS


@dataclass(frozen=True)
class Window:
    """What a response said of the account's rate-limit window."""

    remaining: int | None
    reset_at: float | None  # epoch seconds

    @classmethod
    def read(cls, headers: Mapping[str, str], remaining: str, reset: str, now: float) -> Window:
        try:
            left = int(headers.get(remaining, ""))
        except ValueError:
            left = None
        return cls(left, _epoch(headers.get(reset), now))


class Throttle:
    """Per account: when it may post again. An account whose window is down
    to ``reserve`` requests pauses until the reset instead of spending its
    last ones (the volunteer uses the same account by hand)."""

    def __init__(self, reserve: int = 1) -> None:
        self.reserve = reserve
        self._resume_at: dict[str, float] = {}

    def observe(self, account: str, window: Window | None) -> None:
        if window and window.remaining is not None and window.reset_at is not None \
                and window.remaining <= self.reserve:
            self.hold(account, window.reset_at)

    def hold(self, account: str, until: float) -> None:
        self._resume_at[account] = max(until, self._resume_at.get(account, 0.0))

    def wait(self, account: str, now: float) -> float:
        """Seconds before this account may post (0: now)."""
        until = self._resume_at.get(account)
        if until is None or until <= now:
            self._resume_at.pop(account, None)
            return 0.0
        return until - now


def classify(status: int) -> Outcome:
    """The common meaning of an HTTP status for a post; adapters refine it
    (Bluesky's ExpiredToken, X's duplicate)."""
    if 200 <= status < 300:
        return POSTED
    if status in (401, 403):
        return REVOKED
    if status in (408, 425, 429) or status >= 500:
        return Outcome(Verdict.retry, f"http {status}")
    return Outcome(Verdict.failed, f"http {status}")


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
