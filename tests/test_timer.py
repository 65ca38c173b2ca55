"""``deadline.Timer``: one timer for a whole stream, moved rather than re-made per chunk."""

from __future__ import annotations

import asyncio

import pytest

from thrifty.deadline import Timer


async def test_a_moved_timer_fires_at_its_new_time_only() -> None:
    timer = Timer(0.01)
    timer.move(600)
    assert await timer.run(asyncio.sleep(0.05, "done")) == "done"  # the old 10 ms passed unnoticed
    timer.move(0.01)
    with pytest.raises(TimeoutError):
        await timer.run(asyncio.sleep(600))
    timer.close()


async def test_a_timer_that_fired_outside_run_fails_the_next_wait_at_once() -> None:
    timer = Timer(0.001)
    await asyncio.sleep(0.05)  # fired while nobody waited inside run: nothing was cancelled
    assert timer.expired
    with pytest.raises(TimeoutError):
        await timer.run(asyncio.sleep(600))
    timer.move(600)  # too late: a timer that fired stays fired
    with pytest.raises(TimeoutError):
        await timer.run(asyncio.sleep(0))
