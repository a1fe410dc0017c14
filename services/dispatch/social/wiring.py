"""Which settings, adapter and subjects make each social dispatcher."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from services.dispatch.social.settings import (
    BlueskyDispatchSettings,
    MastodonDispatchSettings,
    SocialDispatchSettings,
    XDispatchSettings,
)
from services.dispatch.social.bluesky import BlueskyPoster
from services.dispatch.social.mastodon import MastodonPoster
from services.dispatch.social.usecases.post_job import Poster
from services.dispatch.social.x import XPoster
from shared.catalogue import BLUESKY_JOB, BLUESKY_RESULT, MASTODON_JOB, MASTODON_RESULT, X_JOB, X_RESULT, SubjectSpec


@dataclass(frozen=True)
class Network:
    settings: type[SocialDispatchSettings]
    poster: Callable[[httpx.AsyncClient, Any], Poster]  # Any: each lambda takes its own network's settings
    jobs: SubjectSpec
    results: SubjectSpec
    description: str


NETWORKS: dict[str, Network] = {
    "mastodon": Network(
        MastodonDispatchSettings,
        lambda http, s: MastodonPoster(http, default_limit=s.default_max_characters,
                                       cache_seconds=s.instance_cache_seconds),
        MASTODON_JOB, MASTODON_RESULT,
        "Posts on each volunteer's Mastodon account, within their instance's limits.",
    ),
    "bluesky": Network(
        BlueskyDispatchSettings,
        lambda http, s: BlueskyPoster(http, service_url=s.service_url),
        BLUESKY_JOB, BLUESKY_RESULT,
        "Posts on each volunteer's Bluesky account with an app-password session.",
    ),
    "x": Network(
        XDispatchSettings,
        lambda http, s: XPoster(http, api_url=s.api_url),
        X_JOB, X_RESULT,
        "Posts on X for volunteers who connected an OAuth 2.0 user token.",
    ),
}
