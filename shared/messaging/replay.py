"""State a service rebuilds from a stream when it starts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from faststream.nats import DeliverPolicy

from shared.catalogue import SubjectSpec

if TYPE_CHECKING:
    from shared.messaging.bus import Bus
    from shared.messaging.fake import FakeBus


class Replay:
    """State a service rebuilds from a stream when it starts (the matcher's
    profiles, the dispatchers' suppression list): every stored message is
    applied, then new ones as they come. ``caught_up`` opens once what the
    stream held at start has been read, so nothing acts on half a state."""

    def __init__(
        self,
        bus: Bus | FakeBus,
        spec: SubjectSpec,
        apply: Callable[[Any], None],
        *,
        policy: DeliverPolicy = DeliverPolicy.ALL,
        describe: Callable[[], str] = lambda: "caught up",
    ) -> None:
        self.bus, self.spec, self.describe = bus, spec, describe
        self.caught_up = asyncio.Event()

        @bus.subscriber(spec, replay=policy)
        async def replay(event: Any, msg: Any) -> None:
            apply(event)
            if msg.raw_message.metadata.num_pending == 0:
                self.caught_up.set()

    async def prepare(self) -> None:
        await self.bus.connect()
        if await self.bus.stored_messages(self.spec) == 0:
            self.caught_up.set()

    async def ready(self) -> tuple[bool, str]:
        if not self.caught_up.is_set():
            return False, f"replaying {self.spec.stream.name}"
        return True, self.describe()
