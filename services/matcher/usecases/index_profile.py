from __future__ import annotations

import structlog

from services.matcher import metrics
from services.matcher.store import MatcherState
from shared.events import InterestProfile

log = structlog.get_logger(__name__)


def index_profile(state: MatcherState, profile: InterestProfile) -> None:
    result = state.index.upsert(profile)
    if result.reason == "out_of_order":
        metrics.REJECTED.labels("out_of_order_profile").inc()
        log.info("profile.ignored", volunteer_id=profile.volunteer_id, reason="older than the indexed one")
    if result.unknown:
        metrics.REJECTED.labels("unknown_interest").inc(len(result.unknown))
        log.warning("profile.interests_rejected", volunteer_id=profile.volunteer_id,
                    interests=list(result.unknown), reason="not in the campaign's taxonomy")
    metrics.PROFILES_INDEXED.set(len(state.index))
