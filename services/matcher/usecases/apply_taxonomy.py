from __future__ import annotations

import structlog

from services.matcher import metrics
from services.matcher.store import MatcherState
from shared.events import Taxonomy

log = structlog.get_logger(__name__)


def apply_taxonomy(state: MatcherState, taxonomy: Taxonomy) -> None:
    first = state.index.taxonomy is None
    left_out = state.index.set_taxonomy(term.name for term in taxonomy.terms)
    if first and left_out:  # profiles indexed before the taxonomy was read: count them once
        metrics.REJECTED.labels("unknown_interest").inc(sum(len(v) for v in left_out.values()))
    log.info("taxonomy.applied", terms=len(taxonomy.terms), profiles_with_unknown_interests=len(left_out))
