"""Everything a social dispatcher publishes leaves through here: the
result of each job, on its network's results subject
(``dispatch.<network>.results``), with a ``Nats-Msg-Id`` made from the job
so a redelivered job's result is stored once."""

from __future__ import annotations

from services.dispatch.social.domain import Outcome, Verdict
from shared.catalogue import SubjectSpec
from shared.events import Channel, DeliveryStatus, DispatchResult, SocialPostJob
from shared.messaging import Bus


class Outbound:
    def __init__(self, bus: Bus, network: Channel, results: SubjectSpec) -> None:
        self.bus, self.network, self.results = bus, network, results

    async def result(self, job: SocialPostJob, outcome: Outcome) -> None:
        posted = outcome.verdict is Verdict.posted
        result = DispatchResult(job_id=job.job_id, relay_id=job.relay_id, message_id=job.message_id,
                                volunteer_id=job.volunteer_id, channel=self.network,
                                status=DeliveryStatus.delivered if posted else DeliveryStatus.failed,
                                reason=None if posted else outcome.reason, outcome=outcome.kind)
        await self.bus.publish(self.results, result, msg_id=f"{job.job_id}:result")
