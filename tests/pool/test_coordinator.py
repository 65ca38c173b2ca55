"""The coordinator on a real redis-server, driven through its API with a fake clock: no worker
processes, no sleeping. Silence is a clock moved forward; a sweep is one call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from thrifty.errors import NoDeploymentAvailable, NotFound, PermissionDenied
from thrifty.pool.coordinator import Pool, Rejoin, TaskDone
from thrifty.pool.matcher import Need
from thrifty.pool.protocol import Capabilities, ModelCapability, Result
from thrifty.pool.settings import PoolSettings

pytestmark = pytest.mark.redis


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def caps(speed: float, model: str = "m", n_ctx: int = 4096, concurrency: int = 1) -> Capabilities:
    return Capabilities(models=(ModelCapability(model, n_ctx, speed),), concurrency=concurrency)


ANSWER = {
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "done"}, "finish_reason": "stop"}]
}


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[tuple[Pool, Clock]]:
    clock = Clock()
    running = Pool(PoolSettings(redis_url=redis_url, heartbeat=1.0, grace=0.5, lease_wait=1.0), clock=clock)
    await running.start()
    for loop in running._loops[1:]:  # the test sweeps by hand; the reply reader stays
        loop.cancel()
    try:
        yield running, clock
    finally:
        await running.aclose()


async def worker(pool: Pool, name: str, speed: float, **kw: Any) -> str:
    made = await pool.create_token(name)
    worker_id = await pool.identify(made["token"])
    assert worker_id is not None and worker_id == made["id"]
    await pool.join(worker_id, caps(speed, **kw))
    return worker_id


class Waiter:
    """One request in flight through ``Pool.run``: what came back, as it came."""

    def __init__(self, pool: Pool, stream: bool = False, need: Need | None = None) -> None:
        self.got: list[tuple[str, Any]] = []
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        self.task = asyncio.create_task(self._run(pool, body, need or Need("m", 10), stream))

    async def _run(self, pool: Pool, body: dict[str, Any], need: Need, stream: bool) -> None:
        async for kind, data in pool.run(body, need, stream):
            self.got.append((kind, data))

    async def until(self, kind: str) -> Any:
        for _ in range(200):
            for got, data in self.got:
                if got == kind:
                    return data
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind!r} in {self.got}")


async def test_a_task_goes_to_the_fastest_worker_and_its_answer_comes_back(pool: tuple[Pool, Clock]) -> None:
    p, _ = pool
    await worker(p, "slow", 10)
    fast = await worker(p, "fast", 100)
    waiter = Waiter(p)
    assert (await waiter.until("assigned")).id == fast
    leased = await p.lease(fast, 0, 1, set())
    (task,) = leased["tasks"]
    assert task["request"]["model"] == "m" and task["stream"] is False
    await p.result(fast, task["task_id"], Result(lease=task["lease"], response=ANSWER, done=True))
    assert await waiter.until("response") == ANSWER
    with pytest.raises(TaskDone):  # once answered, the task takes nothing more
        await p.result(fast, task["task_id"], Result(lease=task["lease"], response=ANSWER, done=True))
    assert (await p.overview())["stats"]["dispatched"] == 1


async def test_a_silent_worker_loses_leased_and_queued_tasks_and_its_late_answer_is_refused(
    pool: tuple[Pool, Clock],
) -> None:
    p, clock = pool
    fast = await worker(p, "fast", 1000)
    slow = await worker(p, "slow", 10)
    first, second = Waiter(p), Waiter(p)
    assert (await first.until("assigned")).id == fast and (await second.until("assigned")).id == fast
    (held,) = (await p.lease(fast, 0, 1, set()))["tasks"]  # one leased, one still queued
    clock.now += 1.6
    await p.heartbeat(slow, 0, None, None)
    await p.sweep()
    assert (await first.until("migrated"))["to"] == slow
    leased = (await p.lease(slow, 0, 4, set()))["tasks"]
    assert len(leased) == 2
    with pytest.raises(PermissionDenied):
        await p.result(fast, held["task_id"], Result(lease=held["lease"], response=ANSWER, done=True))
    for task in leased:
        await p.result(slow, task["task_id"], Result(lease=task["lease"], response=ANSWER, done=True))
    assert await first.until("response") == ANSWER and await second.until("response") == ANSWER
    with pytest.raises(Rejoin):
        await p.lease(fast, 0, 1, set())
    overview = await p.overview()
    assert overview["stats"]["migrated"] == 2
    assert {w["name"]: w["state"] for w in overview["workers"]} == {"fast": "gone", "slow": "active"}


async def test_a_stream_that_sent_chunks_is_lost_not_moved(pool: tuple[Pool, Clock]) -> None:
    p, clock = pool
    fast = await worker(p, "fast", 1000)
    await worker(p, "slow", 10)
    waiter = Waiter(p, stream=True)
    await waiter.until("assigned")
    (task,) = (await p.lease(fast, 0, 1, set()))["tasks"]
    await p.result(fast, task["task_id"], Result(lease=task["lease"], chunks=[{"choices": []}]))
    assert await waiter.until("chunks") == [{"choices": []}]
    clock.now += 1.6
    await p.sweep()
    assert (await waiter.until("lost"))["from"] == fast
    assert (await p.overview())["stats"]["lost"] == 1


async def test_with_no_other_worker_a_task_is_parked_until_one_joins(pool: tuple[Pool, Clock]) -> None:
    p, clock = pool
    only = await worker(p, "only", 100)
    waiter = Waiter(p)
    await waiter.until("assigned")
    clock.now += 1.6
    await p.sweep()
    assert (await p.overview())["parked"] == 1
    later = await worker(p, "later", 50)
    await p.sweep()
    assert (await waiter.until("migrated")) == {"from": "", "to": later}
    (task,) = (await p.lease(later, 0, 1, set()))["tasks"]
    await p.result(later, task["task_id"], Result(lease=task["lease"], response=ANSWER, done=True))
    assert await waiter.until("response") == ANSWER
    assert only != later


async def test_a_lease_answer_that_never_arrived_is_offered_again(pool: tuple[Pool, Clock]) -> None:
    p, _ = pool
    w = await worker(p, "w", 100)
    waiter = Waiter(p)
    await waiter.until("assigned")
    (lost,) = (await p.lease(w, 0, 1, set()))["tasks"]  # say the HTTP answer was lost on the way
    (again,) = (await p.lease(w, 0, 1, set()))["tasks"]
    assert again == lost
    assert (await p.lease(w, 0, 1, {lost["task_id"]}))["tasks"] == []  # held: not offered twice


async def test_draining_moves_what_was_not_leased_and_keeps_what_was(pool: tuple[Pool, Clock]) -> None:
    p, _ = pool
    leaving = await worker(p, "leaving", 1000)
    staying = await worker(p, "staying", 10)
    first, second = Waiter(p), Waiter(p)
    await first.until("assigned")
    await second.until("assigned")
    (kept,) = (await p.lease(leaving, 0, 1, set()))["tasks"]
    assert (await p.release(leaving, leave=False)) == {"state": "draining"}
    assert (await p.lease(leaving, 0, 1, set())) == {"state": "draining", "tasks": []}
    (moved,) = (await p.lease(staying, 0, 4, set()))["tasks"]
    assert moved["task_id"] != kept["task_id"]
    await p.result(leaving, kept["task_id"], Result(lease=kept["lease"], response=ANSWER, done=True))
    await p.result(staying, moved["task_id"], Result(lease=moved["lease"], response=ANSWER, done=True))
    assert await first.until("response") == ANSWER and await second.until("response") == ANSWER
    assert (await p.release(leaving, leave=True)) == {"state": "gone"}


async def test_a_worker_that_rejoins_holds_nothing_its_tasks_are_sent_again(pool: tuple[Pool, Clock]) -> None:
    p, _ = pool
    w = await worker(p, "w", 100)
    waiter = Waiter(p)
    await waiter.until("assigned")
    (old,) = (await p.lease(w, 0, 1, set()))["tasks"]
    await p.join(w, caps(100))  # restarted: whatever it held is gone with the old process
    (new,) = (await p.lease(w, 0, 1, set()))["tasks"]
    assert new["task_id"] == old["task_id"] and new["lease"] != old["lease"]
    assert [w["load"] for w in (await p.overview())["workers"]] == [1]
    with pytest.raises(PermissionDenied):
        await p.result(w, old["task_id"], Result(lease=old["lease"], response=ANSWER, done=True))


async def test_an_abandoned_request_cancels_its_task(pool: tuple[Pool, Clock]) -> None:
    p, _ = pool
    w = await worker(p, "w", 100)
    waiter = Waiter(p)
    await waiter.until("assigned")
    (task,) = (await p.lease(w, 0, 1, set()))["tasks"]
    waiter.task.cancel()
    await asyncio.sleep(0.05)
    with pytest.raises(TaskDone):
        await p.result(w, task["task_id"], Result(lease=task["lease"], chunks=[{}]))
    with pytest.raises(NotFound):
        await p.result(w, "0" * 20, Result(lease=task["lease"], chunks=[{}]))


async def test_no_worker_with_the_model_or_the_context_is_refused_with_the_reason(
    pool: tuple[Pool, Clock],
) -> None:
    p, _ = pool
    with pytest.raises(NoDeploymentAvailable, match="no pool worker is connected"):
        await Waiter(p).until("assigned")
    await worker(p, "small", 100, n_ctx=256)
    with pytest.raises(NoDeploymentAvailable, match="no connected pool worker has the model 'other'"):
        await Waiter(p, need=Need("other", 10)).until("assigned")
    with pytest.raises(NoDeploymentAvailable, match="does not fit any worker's context"):
        await Waiter(p, need=Need("m", 1000)).until("assigned")


async def test_tokens_are_listed_without_secrets_and_revoking_one_puts_its_worker_out(
    pool: tuple[Pool, Clock],
) -> None:
    p, _ = pool
    made = await p.create_token("w")
    w = await p.identify(made["token"])
    assert w is not None
    await p.join(w, caps(100))
    assert await p.list_tokens() == [{"id": made["id"], "name": "w", "created": made["created"]}]
    assert (await p.revoke_token(made["id"]))["revoked"] is True
    assert await p.identify(made["token"]) is None
    with pytest.raises(NotFound):
        await p.revoke_token(made["id"])
    assert {v.state for v in p.workers.values()} == {"gone"}
    assert p.status()["workers"] == 0
