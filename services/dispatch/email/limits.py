"""The dispatcher's rate limits, wired to the clock and the sent ledger.

- global, per replica: ``rate_per_second``; a replica starts with an empty
  bucket, so restarts never add a burst;
- per volunteer: ``volunteer_rate_per_hour``, with up to an hour's worth in
  one go; a volunteer's bucket is rebuilt from the ledger's send times the
  first time this process sees them, so a restart (or another replica on a
  shared PostgreSQL ledger) does not hand out a fresh hour.
"""

from __future__ import annotations

import asyncio
import time

from services.dispatch.email.ledger import Ledger
from services.dispatch.rate_limit import Throttle, TokenBucket
from services.dispatch.email.settings import EmailDispatchSettings

MAX_TRACKED_VOLUNTEERS = 50_000


class SendLimits:
    def __init__(self, settings: EmailDispatchSettings, ledger: Ledger, clock=time.monotonic) -> None:
        self.ledger = ledger
        self.clock = clock
        self.global_rate = settings.rate_per_second
        self.volunteer_rate = settings.volunteer_rate_per_hour / 3600.0
        self.volunteer_burst = settings.volunteer_rate_per_hour
        self.global_bucket = (
            TokenBucket.empty(self.global_rate, max(1.0, self.global_rate), clock()) if self.global_rate else None
        )
        self.volunteers: dict[str, TokenBucket] = {}
        self.throttle = Throttle()

    async def _bucket(self, volunteer_id: str) -> TokenBucket:
        bucket = self.volunteers.get(volunteer_id)
        if bucket is None:
            window = self.volunteer_burst / self.volunteer_rate
            spent = await self.ledger.sent_since(volunteer_id, time.time() - window)
            bucket = self.volunteers.get(volunteer_id)  # another job of theirs may have made it meanwhile
            if bucket is None:
                if len(self.volunteers) >= MAX_TRACKED_VOLUNTEERS:
                    self._forget_idle()
                bucket = TokenBucket.after(self.volunteer_rate, self.volunteer_burst, spent, self.clock())
                self.volunteers[volunteer_id] = bucket
        return bucket

    def _forget_idle(self) -> None:
        # A full bucket holds no information the ledger would not give back.
        now = self.clock()
        for vol, bucket in list(self.volunteers.items()):
            bucket.refill(now)
            if bucket.tokens >= bucket.burst:
                del self.volunteers[vol]

    async def volunteer_turn(self, volunteer_id: str) -> float:
        """Reserve this volunteer's next send: seconds until it is due."""
        if not self.volunteer_rate:
            return 0.0
        return (await self._bucket(volunteer_id)).reserve(self.clock())

    async def global_turn(self) -> None:
        """Wait for this replica's turn to send: its own rate, then the
        pause the server asked for with its last 421/451."""
        if self.global_bucket is not None and (wait := self.global_bucket.reserve(self.clock())) > 0:
            await asyncio.sleep(wait)
        if self.throttle.pause:
            await asyncio.sleep(self.throttle.pause)
