"""A stop always ends, even when a task swallows a cancellation (as
``asyncio.wait_for`` does on Python 3.11 when it is returning)."""

from __future__ import annotations

import asyncio

from shared.tasks import cancel_and_wait


async def _swallows_the_first_cancellation(turns: list[int]) -> None:
    swallowed = False
    while True:
        try:
            turns.append(1)
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            if swallowed:
                raise
            swallowed = True  # what the 3.11 wait_for race does: the loop takes another turn


def test_a_task_that_swallows_a_cancellation_still_stops():
    async def scenario() -> tuple[bool, bool]:
        turns: list[int] = []
        old_way = asyncio.create_task(_swallows_the_first_cancellation(turns))
        await asyncio.sleep(0.03)
        old_way.cancel()
        _, pending = await asyncio.wait({old_way}, timeout=0.3)
        hung = bool(pending)  # cancel() then await: would wait forever
        await cancel_and_wait([old_way], timeout=2)
        return hung, old_way.cancelled()

    hung, stopped = asyncio.run(scenario())
    assert hung and stopped


def test_a_task_that_will_not_stop_is_left_after_the_bound():
    async def scenario() -> tuple[bool, float]:
        stubborn_now = [True]

        async def stubborn() -> None:
            while True:
                try:
                    await asyncio.sleep(1)
                except asyncio.CancelledError:
                    if not stubborn_now[0]:
                        raise

        task = asyncio.create_task(stubborn(), name="stubborn")
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await cancel_and_wait([task], timeout=0.5)
        took, left_running = loop.time() - started, not task.done()
        stubborn_now[0] = False  # let asyncio.run end it
        await cancel_and_wait([task], timeout=2)
        return left_running, took

    left_running, took = asyncio.run(scenario())
    assert left_running and 0.4 < took < 2
