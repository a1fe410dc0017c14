"""Record the hard bounces of one delivery status notification: each one
whose job the ledger knows becomes a ``dispatch.email.bounces`` event (job
id and address hash, never the address); contacts then suppresses the
address, and feed counts the job bounced."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from prometheus_client import Counter

from services.dispatch.email.domain.dsn import read_dsn
from services.dispatch.email.ledger import Ledger
from services.dispatch.email.outbound import Outbound

log = structlog.get_logger(__name__)

BOUNCES = Counter("maillage_dispatch_bounces_total",
                  "DSN recipients by kind: hard (suppressed), soft (ignored), unknown_job.", ["kind"])


@dataclass(frozen=True)
class BounceCount:
    hard: int  # reported: their addresses will be suppressed
    soft: int  # delayed, or failed for now: nothing to do
    unknown_jobs: int  # not ours, or older than the ledger keeps


async def record_bounces(raw: bytes, ledger: Ledger, outbound: Outbound) -> BounceCount:
    """Raises ``NotADsn`` (domain.dsn) for a body that is not one."""
    reading = read_dsn(raw)
    unknown = 0
    for bounce in reading.hard:
        address_hash = await ledger.recipient_of(bounce.job_id)
        if address_hash is None:
            unknown += 1
            continue
        await outbound.bounce(bounce.job_id, address_hash, bounce.status)
    hard = len(reading.hard) - unknown
    BOUNCES.labels("hard").inc(hard)
    BOUNCES.labels("soft").inc(reading.soft)
    BOUNCES.labels("unknown_job").inc(unknown)
    log.info("email.dsn", hard=hard, soft=reading.soft, unknown_jobs=unknown)
    return BounceCount(hard, reading.soft, unknown)
