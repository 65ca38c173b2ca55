"""The task manager: limits, priority, retries, deadlines, cancellation, executors."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from thrifty.errors import InvalidRequest, RateLimited, UpstreamConnectionError
from thrifty.tasks import DeadlineExceeded, State, TaskManager
from thrifty.testing import FakeBackend, chat


class Gate:
    """Tasks that block until released, counting how many run at once."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.now = 0
        self.peak = 0
        self.order: list[str] = []

    async def work(self, label: str) -> str:
        self.now += 1
        self.peak = max(self.peak, self.now)
        self.order.append(label)
        try:
            await self.event.wait()
        finally:
            self.now -= 1
        return label


async def no_sleep(_delay: float) -> None:
    await asyncio.sleep(0)


async def test_global_limit_bounds_concurrency() -> None:
    gate = Gate()
    async with TaskManager(concurrency=3) as tm:
        tasks = [tm.submit(gate.work, str(i)) for i in range(10)]
        await asyncio.sleep(0.01)
        assert tm.running == 3 and tm.queued == 7
        gate.event.set()
        assert [await t for t in tasks] == [str(i) for i in range(10)]
    assert gate.peak == 3


async def test_per_model_limit_leaves_room_for_other_models() -> None:
    gate = Gate()
    async with TaskManager(concurrency=10, model_limits={"slow": 2}) as tm:
        for i in range(5):
            tm.submit(gate.work, f"slow{i}", model="slow")
        for i in range(3):
            tm.submit(gate.work, f"fast{i}", model="fast")
        await asyncio.sleep(0.01)
        started = set(gate.order)
        assert started == {"slow0", "slow1", "fast0", "fast1", "fast2"}
        gate.event.set()
        await tm.join()


async def test_higher_priority_starts_first() -> None:
    gate = Gate()
    async with TaskManager(concurrency=1) as tm:
        tm.submit(gate.work, "first")
        tm.submit(gate.work, "low", priority=0)
        tm.submit(gate.work, "high", priority=5)
        tm.submit(gate.work, "mid", priority=2)
        gate.event.set()
        await tm.join()
    assert gate.order == ["first", "high", "mid", "low"]


async def test_retryable_errors_are_retried_then_succeed() -> None:
    backend = FakeBackend([UpstreamConnectionError("reset"), RateLimited("slow down", retry_after=3), "fine"])
    async with TaskManager(sleep=no_sleep) as tm:
        task = tm.submit_chat(backend, chat("hi"), retries=2)
        response = await task
    assert response.text == "fine"
    assert task.attempts == 3


async def test_retry_waits_as_the_upstream_asks_and_gives_up_on_too_long_a_wait() -> None:
    waits: list[float] = []

    async def record(delay: float) -> None:
        waits.append(delay)

    backend = FakeBackend([RateLimited("slow down", retry_after=3), "fine"])
    async with TaskManager(sleep=record, retry_base_s=0.01) as tm:
        assert (await tm.submit_chat(backend, chat("hi"), retries=2)).text == "fine"
    assert waits == [3.0]
    backend = FakeBackend([RateLimited("come back tomorrow", retry_after=86_400), "never"])
    async with TaskManager(sleep=record, max_retry_after_s=60) as tm:
        task = tm.submit_chat(backend, chat("hi"), retries=2)
        with pytest.raises(RateLimited):
            await task
    assert task.attempts == 1 and waits == [3.0]


async def test_non_retryable_error_fails_at_once() -> None:
    backend = FakeBackend([InvalidRequest("bad"), "never"])
    async with TaskManager(sleep=no_sleep) as tm:
        task = tm.submit_chat(backend, chat("hi"), retries=5)
        with pytest.raises(InvalidRequest):
            await task
    assert task.attempts == 1 and task.state is State.FAILED


async def test_retries_run_out() -> None:
    backend = FakeBackend(lambda _r: UpstreamConnectionError("down"))
    async with TaskManager(sleep=no_sleep) as tm:
        task = tm.submit_chat(backend, chat("hi"), retries=2)
        with pytest.raises(UpstreamConnectionError):
            await task
    assert len(backend.requests) == 3


async def test_deadline_stops_a_running_task() -> None:
    async with TaskManager() as tm:
        task = tm.submit(asyncio.sleep, 30, timeout=0.02)
        with pytest.raises(DeadlineExceeded, match="while running"):
            await task


async def test_deadline_expires_a_queued_task() -> None:
    gate = Gate()
    async with TaskManager(concurrency=1) as tm:
        blocker = tm.submit(gate.work, "blocker")
        late = tm.submit(gate.work, "late", timeout=0.01)
        await asyncio.sleep(0.03)
        gate.event.set()
        await blocker
        with pytest.raises(DeadlineExceeded, match="before it could start"):
            await late
    assert gate.order == ["blocker"]


async def test_a_queued_task_times_out_while_every_slot_stays_busy() -> None:
    gate = Gate()
    async with TaskManager(concurrency=1) as tm:
        tm.submit(gate.work, "blocker")
        late = tm.submit(gate.work, "late", timeout=0.01)
        with pytest.raises(DeadlineExceeded):
            await late
        gate.event.set()


async def test_cancel_queued_and_running_tasks_frees_their_slots() -> None:
    gate = Gate()
    async with TaskManager(concurrency=1) as tm:
        running = tm.submit(gate.work, "running")
        queued = tm.submit(gate.work, "queued")
        after = tm.submit(gate.work, "after")
        await asyncio.sleep(0.01)
        assert queued.cancel() and queued.cancelled()
        assert running.cancel()
        await asyncio.sleep(0.01)
        assert running.cancelled()
        gate.event.set()
        assert await after == "after"
        assert not after.cancel()  # already finished
    assert gate.order == ["running", "after"]


async def test_as_completed_yields_in_completion_order() -> None:
    async def wait_then(delay: float, value: str) -> str:
        await asyncio.sleep(delay)
        return value

    async with TaskManager() as tm:
        tasks = [tm.submit(wait_then, d, v) for d, v in [(0.06, "c"), (0.0, "a"), (0.03, "b")]]
        order = [t.result() async for t in tm.as_completed(tasks)]
    assert order == ["a", "b", "c"]


async def test_thread_pool_runs_blocking_calls_off_the_loop() -> None:
    loop_thread = threading.get_ident()
    async with TaskManager(threads=2) as tm:
        ident = await tm.submit(threading.get_ident, kind="thread")
    assert ident != loop_thread


async def test_process_pool_runs_cpu_work_in_other_processes() -> None:
    async with TaskManager(processes=2) as tm:
        squares = [tm.submit(pow, n, 2, kind="process") for n in range(6)]
        pid = await tm.submit(os.getpid, kind="process")
        assert [await t for t in squares] == [0, 1, 4, 9, 16, 25]
    assert pid != os.getpid()


async def test_close_cancels_what_is_left() -> None:
    tm = TaskManager(concurrency=1)
    first = tm.submit(asyncio.sleep, 30)
    second = tm.submit(asyncio.sleep, 30)
    await asyncio.sleep(0)
    await tm.aclose()
    assert first.cancelled() and second.cancelled()
    with pytest.raises(RuntimeError, match="closed"):
        tm.submit(asyncio.sleep, 0)


async def test_bad_kind_is_refused() -> None:
    async with TaskManager() as tm:
        with pytest.raises(ValueError, match="kind must be one of"):
            tm.submit(pow, 2, 2, kind="gpu")  # type: ignore[arg-type]


async def test_an_adaptive_limit_backs_off_on_429s() -> None:
    from thrifty.tasks import AimdLimit, AimdSettings

    limit = AimdLimit(AimdSettings(initial=20, backoff=0.5))
    backend = FakeBackend(lambda _r: RateLimited("slow down"))
    async with TaskManager(concurrency=limit, sleep=no_sleep) as tm:
        task = tm.submit_chat(backend, chat("hi"), retries=0)
        with pytest.raises(RateLimited):
            await task
    assert limit.limit == 10


def test_importing_tasks_loads_no_heavy_modules() -> None:
    import subprocess
    import sys

    code = (
        "import sys, thrifty.tasks\n"
        "heavy = [m for m in ('ray', 'aiohttp', 'sqlite3', 'starlette', 'genai_prices') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


async def test_close_does_not_wait_out_a_retry_backoff() -> None:
    backend = FakeBackend(lambda _r: RateLimited("later", retry_after=30))
    tm = TaskManager()
    task = tm.submit_chat(backend, chat("hi"), retries=3)
    while not backend.requests:
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    await asyncio.wait_for(tm.aclose(), timeout=5)
    assert task.cancelled()
