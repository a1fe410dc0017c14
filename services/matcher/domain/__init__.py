"""The matcher's rules, pure: no I/O, no clock of their own (every time is an
argument), so they are tested with explicit clocks and replayed over the past
when the matcher restarts.

- ``index``: the profiles, inverted by interest, region and locale;
  targeting, audience estimate, score = audience × 2^(priority − 1), and the
  partition a volunteer belongs to;
- ``queue``: pacing — a daily cap per volunteer and quiet hours, in the
  campaign's time zone; what waits is released by priority, then score;
- ``planner``: the decisions, event by event, and the rebuild of the queues
  from the FEED stream (its module doc says what survives a restart).
"""

from services.matcher.domain.index import (
    Indexed,
    Match,
    Partition,
    ProfileIndex,
    partition_of,
    score,
    suggestion_id,
)
from services.matcher.domain.planner import Decision, Planner, Stored
from services.matcher.domain.queue import Outcome, Pending, Schedule, SuggestionQueue

__all__ = [
    "Decision", "Indexed", "Match", "Outcome", "Partition", "Pending", "Planner", "ProfileIndex",
    "Schedule", "Stored", "SuggestionQueue", "partition_of", "score", "suggestion_id",
]
