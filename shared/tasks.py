"""Stopping background tasks so that a stop always ends.

On Python 3.11 a cancellation that lands while ``asyncio.wait_for`` (used
by nats-py for every PubAck and request) is returning is swallowed: the
task goes on, a loop takes its next turn, and ``task.cancel(); await task``
waits forever — a service that never shuts down (seen under load in the
feed scheduler). So: cancel again until the task is done, within a bound."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import structlog

log = structlog.get_logger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task], timeout: float = 10.0) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again while any goes
    on; a task still running after ``timeout`` is logged and left."""
    pending = {task for task in tasks if not task.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=min(0.5, max(0.0, deadline - loop.time())))
    if pending:
        log.warning("task.refused_to_stop", tasks=sorted(task.get_name() for task in pending))
