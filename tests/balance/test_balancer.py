"""A balanced group keeps answering while deployments fail, stall or fill up."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from thrifty.balance import Balancer, FakeClock
from thrifty.balance.strategies import RoundRobin
from thrifty.errors import (
    InvalidRequest,
    NoDeploymentAvailable,
    Overloaded,
    RateLimited,
    RequestTimeout,
    UpstreamConnectionError,
    UpstreamStatusError,
)
from thrifty.testing import FakeBackend, chat
from thrifty.types import parsed

from .conftest import MakeGroup


def boom() -> UpstreamConnectionError:
    return UpstreamConnectionError("connection reset")


async def test_round_robin_spreads_evenly(make_group: MakeGroup) -> None:
    backends = [FakeBackend(n, name=n) for n in ("a", "b", "c")]
    group = make_group(backends, strategy="round_robin")
    answers = Counter([(await group.complete(chat("hi"))).text for _ in range(30)])
    assert answers == {"a": 10, "b": 10, "c": 10}


async def test_least_outstanding_avoids_the_busy_deployment(make_group: MakeGroup) -> None:
    slow, idle = FakeBackend("slow", name="slow", delay=10), FakeBackend("idle", name="idle")
    group = make_group([slow, idle], strategy="least_outstanding")
    stuck = asyncio.ensure_future(group.complete(chat("x")))
    await asyncio.sleep(0)
    while not slow.requests and not idle.requests:
        await asyncio.sleep(0)
    busy_name = "slow" if slow.requests else "idle"
    results = [(await group.complete(chat("y"))).text for _ in range(5)]
    stuck.cancel()
    assert all(r != busy_name for r in results)


async def test_p2c_prefers_low_latency(make_group: MakeGroup) -> None:
    fast, slow = FakeBackend("fast", name="fast"), FakeBackend("slow", name="slow")
    group = make_group([fast, slow], strategy="p2c")
    group.members[0].ewma.add(0.01)
    group.members[1].ewma.add(1.0)
    answers = Counter([(await group.complete(chat("hi"))).text for _ in range(20)])
    assert answers["fast"] == 20


async def test_weighted_random_follows_weights(make_group: MakeGroup) -> None:
    backends = [FakeBackend("heavy", name="heavy"), FakeBackend("light", name="light")]
    group = make_group(backends, strategy="weighted", deployment={"heavy": {"weight": 9}})
    answers = Counter([(await group.complete(chat("hi"))).text for _ in range(200)])
    assert answers["heavy"] > 150 and answers["light"] > 0


async def test_affinity_sends_a_shared_prefix_to_one_replica(make_group: MakeGroup) -> None:
    backends = [FakeBackend(n, name=n) for n in ("a", "b", "c")]
    group = make_group(backends, strategy="affinity")
    system = {"role": "system", "content": "You are a careful assistant. " * 20}
    texts = set()
    for i in range(12):
        request = chat(f"question {i}")
        request.messages.insert(0, system)
        texts.add((await group.complete(request)).text)
    assert len(texts) == 1


async def test_affinity_by_session_id(make_group: MakeGroup) -> None:
    backends = [FakeBackend(n, name=n) for n in ("a", "b", "c", "d")]
    group = make_group(backends, strategy="affinity")

    async def replica(session: str) -> str:
        request = chat("hi")
        request.options["session_id"] = session
        return (await group.complete(request)).text

    picks = {s: {await replica(s) for _ in range(5)} for s in ("s1", "s2", "s3", "s4", "s5")}
    assert all(len(p) == 1 for p in picks.values())
    assert len({next(iter(p)) for p in picks.values()}) > 1


async def test_affinity_spills_when_the_sticky_replica_is_overloaded(make_group: MakeGroup) -> None:
    backends = [FakeBackend(n, name=n) for n in ("a", "b")]
    group = make_group(backends, strategy="affinity", affinity={"balance_abs": 2, "balance_rel": 1.5})
    request = chat("hi")
    request.options["session_id"] = "s"
    sticky = (await group.complete(request)).text
    member = next(m for m in group.members if m.name == sticky)
    member.outstanding = 3
    assert (await group.complete(request)).text != sticky


async def test_retry_moves_to_another_deployment(make_group: MakeGroup, clock: FakeClock) -> None:
    bad = FakeBackend([boom()], name="bad")
    good = FakeBackend("good", name="good")
    group = make_group([bad, good], strategy="round_robin")
    _round_robin(group).turn = -1  # start with "bad"
    request = chat("hi")
    response = await group.complete(request)
    assert response.text == "good"
    assert request.trace.attempts == 2 and request.trace.deployment == "good"
    assert clock.sleeps == []  # failing over to a fresh deployment does not wait


async def test_non_retryable_error_is_not_retried(make_group: MakeGroup) -> None:
    bad = FakeBackend([UpstreamStatusError("bad request", upstream_status=400)], name="bad")
    good = FakeBackend("good", name="good")
    group = make_group([bad, good], strategy="round_robin")
    _round_robin(group).turn = -1
    with pytest.raises(UpstreamStatusError):
        await group.complete(chat("hi"))
    assert good.requests == []


async def test_single_deployment_backs_off_with_full_jitter(make_group: MakeGroup, clock: FakeClock) -> None:
    only = FakeBackend([boom(), boom(), "ok"], name="only")
    group = make_group([only], retries=2, backoff_base=0.1, backoff_max=5)
    assert (await group.complete(chat("hi"))).text == "ok"
    assert len(clock.sleeps) == 2
    assert 0 <= clock.sleeps[0] <= 0.1 and 0 <= clock.sleeps[1] <= 0.2


async def test_retries_stop_after_the_limit(make_group: MakeGroup) -> None:
    only = FakeBackend([boom()] * 5, name="only")
    group = make_group([only], retries=1)
    with pytest.raises(UpstreamConnectionError):
        await group.complete(chat("hi"))
    assert len(only.requests) == 2


async def test_429_waits_for_retry_after(make_group: MakeGroup, clock: FakeClock) -> None:
    only = FakeBackend([RateLimited("slow down", retry_after=3), "ok"], name="only")
    group = make_group([only])
    assert (await group.complete(chat("hi"))).text == "ok"
    assert clock.sleeps and clock.sleeps[-1] >= 3


async def test_429_with_too_long_retry_after_gives_up(make_group: MakeGroup) -> None:
    only = FakeBackend([RateLimited("slow down", retry_after=120), "ok"], name="only")
    group = make_group([only], max_retry_after=10)
    with pytest.raises(RateLimited):
        await group.complete(chat("hi"))


async def test_retry_budget_stops_a_retry_storm(make_group: MakeGroup) -> None:
    only = FakeBackend(lambda r: boom(), name="only")
    group = make_group(
        [only],
        retries=3,
        budget_ratio=0.1,
        budget_min_per_s=0.001,
        breaker={"failures": 100, "min_requests": 100},
    )
    group.budget.tokens = 2
    for _ in range(5):
        with pytest.raises(UpstreamConnectionError):
            await group.complete(chat("hi"))
    assert len(only.requests) < 5 * 4
    assert group.budget.denied > 0


async def test_open_breaker_takes_the_deployment_out(make_group: MakeGroup, clock: FakeClock) -> None:
    flaky = FakeBackend(lambda r: boom(), name="flaky")
    good = FakeBackend("good", name="good")
    group = make_group([flaky, good], strategy="round_robin", breaker={"failures": 2, "cooldown": 30})
    for _ in range(10):
        assert (await group.complete(chat("hi"))).text == "good"
    assert group.status()["deployments"]["flaky"]["state"] == "open"
    assert len(flaky.requests) == 2
    clock.advance(30)
    for _ in range(4):
        await group.complete(chat("hi"))
    assert len(flaky.requests) == 3  # exactly one half-open probe


async def test_all_open_raises_no_deployment_available(make_group: MakeGroup) -> None:
    only = FakeBackend(lambda r: boom(), name="only")
    group = make_group([only], retries=0, breaker={"failures": 1})
    with pytest.raises(UpstreamConnectionError):
        await group.complete(chat("hi"))
    with pytest.raises(NoDeploymentAvailable, match="only: open"):
        await group.complete(chat("hi"))


async def test_rpm_limit_moves_traffic_then_rate_limits(make_group: MakeGroup, clock: FakeClock) -> None:
    a, b = FakeBackend("a", name="a"), FakeBackend("b", name="b")
    group = make_group([a, b], deployment={"a": {"rpm": 2}, "b": {"rpm": 3}})
    answers = Counter([(await group.complete(chat("hi"))).text for _ in range(5)])
    assert answers == {"a": 2, "b": 3}
    with pytest.raises(RateLimited) as info:
        await group.complete(chat("hi"))
    assert info.value.retry_after is not None and info.value.retry_after > 0
    clock.advance(61)
    await group.complete(chat("hi"))


async def test_deployment_timeout_fails_over(make_group: MakeGroup) -> None:
    stuck = FakeBackend("late", name="stuck", delay=30)
    good = FakeBackend("good", name="good")
    group = make_group([stuck, good], strategy="round_robin", deployment={"stuck": {"timeout": 0.01}})
    _round_robin(group).turn = -1
    assert (await group.complete(chat("hi"))).text == "good"
    assert group.members[0].failed == 1


async def test_request_timeout_option_is_not_the_deployments_fault(make_group: MakeGroup) -> None:
    stuck = FakeBackend("late", name="stuck", delay=30)
    group = make_group([stuck], retries=0)
    for _ in range(6):  # more than the breaker's consecutive-failure limit
        request = chat("hi")
        request.options["timeout"] = "0.01"
        with pytest.raises(RequestTimeout):
            await group.complete(request)
    member = group.members[0]
    assert member.failed == 0 and member.breaker.state == "closed"


@pytest.mark.parametrize("value", ["soon", True, -1, "0", "inf"])
async def test_bad_request_timeout_option_is_rejected(make_group: MakeGroup, value: object) -> None:
    backend = FakeBackend("ok", name="a")
    group = make_group([backend])
    request = chat("hi")
    request.options["timeout"] = value
    with pytest.raises(InvalidRequest) as info:
        await group.complete(request)
    assert info.value.param == "timeout" and backend.requests == []


async def test_stream_retries_transparently_before_the_first_chunk(make_group: MakeGroup) -> None:
    bad = FakeBackend([boom()], name="bad")
    good = FakeBackend("one two three", name="good")
    group = make_group([bad, good], strategy="round_robin")
    _round_robin(group).turn = -1
    chunks = [parsed(c) async for c in group.stream(chat("hi"))]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "one two three" and chunks[-1]["usage"]


async def test_stream_error_after_first_chunk_is_raised(make_group: MakeGroup) -> None:
    class Breaks(FakeBackend):
        async def stream(self, request):  # type: ignore[no-untyped-def,override]
            yield {"choices": [{"index": 0, "delta": {"content": "par"}}]}
            raise boom()

    good = FakeBackend("good", name="good")
    group = make_group([Breaks(name="breaks"), good], strategy="round_robin")
    _round_robin(group).turn = -1
    seen = []
    with pytest.raises(UpstreamConnectionError):
        async for chunk in group.stream(chat("hi")):
            seen.append(chunk)
    assert len(seen) == 1 and good.requests == []


async def test_first_token_timeout_fails_over_for_streams(make_group: MakeGroup) -> None:
    stuck = FakeBackend("late", name="stuck", delay=30)
    good = FakeBackend("good", name="good")
    group = make_group(
        [stuck, good], strategy="round_robin", deployment={"stuck": {"first_token_timeout": 0.01}}
    )
    _round_robin(group).turn = -1
    chunks = [parsed(c) async for c in group.stream(chat("hi"))]
    assert any(c["choices"] and c["choices"][0]["delta"].get("content") == "good" for c in chunks)


async def test_hedge_takes_the_faster_answer_and_cancels_the_other(make_group: MakeGroup) -> None:
    slow = FakeBackend("slow", name="slow", delay=30)
    fast = FakeBackend("fast", name="fast")
    group = make_group([slow, fast], strategy="round_robin", hedge=True, hedge_delay=0.01)
    _round_robin(group).turn = -1
    request = chat("hi")
    assert (await group.complete(request)).text == "fast"
    assert request.trace.annotations["hedged"] == "fast"
    await asyncio.sleep(0)
    assert group.members[0].outstanding == 0 and group.hedge_wins == 1


async def test_admission_queue_overflows_with_overloaded(make_group: MakeGroup) -> None:
    gate = asyncio.Event()

    class Blocking(FakeBackend):
        async def complete(self, request):  # type: ignore[no-untyped-def,override]
            self.requests.append(request)
            await gate.wait()
            return await super().complete(request)

    group = make_group([Blocking("ok", name="a")], max_concurrency=1, max_queue=1)
    first = asyncio.ensure_future(group.complete(chat("1")))
    second = asyncio.ensure_future(group.complete(chat("2")))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as info:
        await group.complete(chat("3"))
    assert info.value.retry_after is not None and info.value.retry_after >= 1
    assert group.status()["queued"] == 1
    gate.set()
    assert [r.text for r in await asyncio.gather(first, second)] == ["ok", "ok"]


async def test_status_reports_every_deployment(make_group: MakeGroup) -> None:
    group = make_group([FakeBackend("a", name="a"), FakeBackend("b", name="b")])
    await group.complete(chat("hi"))
    status = group.status()
    assert set(status["deployments"]) == {"a", "b"}
    assert sum(d["served"] for d in status["deployments"].values()) == 1


async def test_hedge_delay_follows_the_healthy_deployments_p95(make_group: MakeGroup) -> None:
    group = make_group(
        [FakeBackend(n, name=n) for n in ("a", "b", "c")], hedge=True, hedge_min_samples=5, hedge_delay=7.0
    )
    assert group.hedge_delay() == 7.0
    for latency, member in zip((0.02, 0.03, 0.5), group.members, strict=True):
        for _ in range(10):
            member.latencies.add(latency)
    assert group.hedge_delay() == 0.03


async def test_hedged_stream_takes_the_first_to_start_and_closes_the_other(make_group: MakeGroup) -> None:
    slow = FakeBackend("slow", name="slow", delay=30)
    fast = FakeBackend("fast words", name="fast")
    group = make_group([slow, fast], strategy="round_robin", hedge=True, hedge_delay=0.01)
    _round_robin(group).turn = -1
    request = chat("hi")
    chunks = [parsed(c) async for c in group.stream(request)]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "fast words" and request.trace.annotations["hedged"] == "fast"
    assert [m.outstanding for m in group.members] == [0, 0] and group.hedge_wins == 1


async def test_hedged_stream_without_a_second_deployment_just_waits(make_group: MakeGroup) -> None:
    only = FakeBackend("late but fine", name="only", delay=0.05)
    group = make_group([only], hedge=True, hedge_delay=0.001)
    chunks = [parsed(c) async for c in group.stream(chat("hi"))]
    assert chunks[-1]["usage"] and group.hedges == 0


async def test_tpm_limit_counts_prompt_and_completion_tokens(make_group: MakeGroup, clock: FakeClock) -> None:
    a, b = FakeBackend("one two three", name="a"), FakeBackend("b", name="b")
    group = make_group([a, b], strategy="round_robin", deployment={"a": {"tpm": 10}})
    _round_robin(group).turn = -1
    await group.complete(chat("a long prompt of many words here"))  # ~10 prompt + 3 completion tokens on a
    texts = {(await group.complete(chat("x"))).text for _ in range(4)}
    assert texts == {"b"}
    clock.advance(61)
    assert group.members[0].unavailable_because(1) is None


async def test_per_deployment_concurrency_limit_sends_overflow_elsewhere(make_group: MakeGroup) -> None:
    gate = asyncio.Event()

    class Blocking(FakeBackend):
        async def complete(self, request):  # type: ignore[no-untyped-def,override]
            self.requests.append(request)
            await gate.wait()
            return await super().complete(request)

    busy, spare = Blocking("busy", name="busy"), FakeBackend("spare", name="spare")
    group = make_group([busy, spare], strategy="round_robin", deployment={"busy": {"max_concurrency": 1}})
    _round_robin(group).turn = -1
    held = asyncio.ensure_future(group.complete(chat("1")))
    await asyncio.sleep(0)
    assert {(await group.complete(chat("x"))).text for _ in range(3)} == {"spare"}
    gate.set()
    assert (await held).text == "busy"


async def test_order_keeps_traffic_on_the_first_tier_until_it_fails(make_group: MakeGroup) -> None:
    primary = FakeBackend([boom(), "primary", "primary"], name="primary")
    backup = FakeBackend("backup", name="backup")
    group = make_group(
        [backup, primary],
        deployment={"primary": {"options": {"order": 1}}, "backup": {"options": {"order": 2}}},
    )
    texts = [(await group.complete(chat("hi"))).text for _ in range(3)]
    assert texts == ["backup", "primary", "primary"]


async def test_p2c_retries_an_idle_deployment_once_its_latency_fades(
    make_group: MakeGroup, clock: FakeClock
) -> None:
    fast, once_slow = FakeBackend("fast", name="fast"), FakeBackend("recovered", name="once_slow")
    group = make_group([fast, once_slow], strategy="p2c")
    group.members[1].ewma.add(2.0)  # one slow answer, long ago
    for _ in range(5):
        group.members[0].ewma.add(0.05)
        assert (await group.complete(chat("hi"))).text == "fast"
    clock.advance(60)
    group.members[0].ewma.add(0.05)
    assert (await group.complete(chat("hi"))).text == "recovered"


def _round_robin(group: Balancer) -> RoundRobin:
    assert isinstance(group.strategy, RoundRobin)
    return group.strategy
