"""A social dispatcher's NATS adapter: the jobs of its network's subject
(``dispatch.<network>.jobs``), through the durable consumer
``dispatch-<network>`` (shared by every replica; KEDA scales on its lag),
each handed to ``usecases.post_job``. A job the use case did not settle
(a deferral, a retry) is acked when it returns (``shared/messaging/settle.py``)."""

from __future__ import annotations

from services.dispatch.social.settings import SocialDispatchSettings
from services.dispatch.social.usecases.post_job import PostJob
from shared.catalogue import SubjectSpec
from shared.events import SocialPostJob
from shared.messaging import Bus


def subscribe(bus: Bus, settings: SocialDispatchSettings, jobs: SubjectSpec, post: PostJob) -> None:
    @bus.subscriber(jobs, durable=f"dispatch-{post.network.value}", max_deliver=settings.max_deliver,
                    ack_wait=max(60.0, 3 * settings.http_timeout), batch_size=8)
    async def on_job(job: SocialPostJob, msg) -> None:
        await post(job, msg)
