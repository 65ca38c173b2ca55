"""Rate windows, budget reservations and in-flight slots: in process and shared through a real Redis."""

from __future__ import annotations

import asyncio
import logging

import pytest

from thrifty.tenancy.counters import Check, LocalCounters, RedisCounters


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rpm(limit: int) -> Check:
    return Check("rate", "rpm:key:a", limit, 1, 60.0)


@pytest.fixture(params=["local", "redis"])
def make(request: pytest.FixtureRequest, clock: Clock):  # type: ignore[no-untyped-def]
    """A factory of counters that share state the way replicas would."""
    if request.param == "local":
        shared = LocalCounters(clock)
        return lambda: shared
    url = request.getfixturevalue("redis_url")
    return lambda: RedisCounters(url, clock=clock, timeout=10)


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_requests_beyond_the_limit_are_refused_with_a_retry_time(make, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    counters = make()
    verdicts = [await counters.admit([rpm(3)], f"r{i}") for i in range(4)]
    assert [v.admitted for v in verdicts] == [True, True, True, False]
    assert verdicts[2].remaining == (0.0,)
    assert verdicts[3].failed is not None and 0 < verdicts[3].retry_after <= 60
    clock.now += 120  # two windows later everything has slid out
    assert (await counters.admit([rpm(3)], "r5")).admitted


async def test_the_window_slides_instead_of_resetting(make, clock: Clock) -> None:  # type: ignore[no-untyped-def]
    counters = make()
    clock.now = 1_800_000_000.0 // 60 * 60 + 59  # last second of a window
    for i in range(10):
        assert (await counters.admit([rpm(10)], f"a{i}")).admitted
    clock.now += 2  # a fixed window would allow 10 more now; a sliding one allows almost none
    admitted = sum([(await counters.admit([rpm(10)], f"b{i}")).admitted for i in range(10)])
    assert admitted <= 1


async def test_one_failing_check_moves_no_counter(make) -> None:  # type: ignore[no-untyped-def]
    counters = make()
    budget = Check("budget", "usd:key:a:0", 1.0, 0.6, 3600.0)
    assert (await counters.admit([rpm(5), budget], "r1")).admitted
    refused = await counters.admit([rpm(5), budget], "r2")
    assert not refused.admitted and refused.failed == budget
    # the refused request did not use up a request slot: 4 more fit under rpm=5
    assert all([(await counters.admit([rpm(5)], f"x{i}")).admitted for i in range(4)])
    assert not (await counters.admit([rpm(5)], "x5")).admitted


async def test_budget_starts_from_recorded_spend_and_settles_to_real_cost(make) -> None:  # type: ignore[no-untyped-def]
    counters = make()
    reserve = Check("budget", "usd:key:b:0", 1.0, 0.3, 3600.0, seed=0.5)
    assert (await counters.admit([reserve], "r1")).remaining == (pytest.approx(0.2),)
    counters.settle([(reserve, 0.01 - 0.3)], "r1", admitted_at=0.0)  # it really cost $0.01
    await counters.flush()  # Redis settlements wait a moment to share a round trip
    assert (await counters.admit([reserve], "r2")).admitted  # 0.51 + 0.3 fits under 1.0


async def test_in_flight_slots_are_released(make) -> None:  # type: ignore[no-untyped-def]
    counters = make()
    slot = Check("parallel", "par:key:c", 2, 1, 900.0)
    assert (await counters.admit([slot], "r1")).admitted
    assert (await counters.admit([slot], "r2")).admitted
    assert not (await counters.admit([slot], "r3")).admitted
    counters.settle([(slot, 0.0)], "r1", admitted_at=0.0)
    await counters.flush()
    assert (await counters.admit([slot], "r3")).admitted


async def test_settlements_reach_redis_without_an_explicit_flush(redis_url: str) -> None:
    counters = RedisCounters(redis_url, timeout=10)
    slot = Check("parallel", "par:key:d", 1, 1, 900.0)
    assert (await counters.admit([slot], "r1")).admitted
    counters.settle([(slot, 0.0)], "r1", admitted_at=0.0)
    for _ in range(200):  # released within a moment, by the batched pipeline
        if (await counters.admit([slot], "r2")).admitted:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the slot was never released")
    await counters.aclose()


async def test_three_replicas_on_one_redis_admit_at_most_the_limit(redis_url: str) -> None:
    replicas = [RedisCounters(redis_url, timeout=10) for _ in range(3)]
    try:
        results = await asyncio.gather(*(replicas[i % 3].admit([rpm(60)], f"r{i}") for i in range(300)))
        assert sum(v.admitted for v in results) == 60
    finally:
        for r in replicas:
            await r.aclose()


async def test_redis_down_falls_back_to_local_limits_with_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.processes import free_port as _port

    counters = RedisCounters(f"redis://127.0.0.1:{_port()}/0", timeout=0.2)
    with caplog.at_level(logging.WARNING, "thrifty.tenancy"):
        verdicts = [await counters.admit([rpm(2)], f"r{i}") for i in range(3)]
    assert [v.admitted for v in verdicts] == [True, True, False]  # still limited, never "no limit"
    assert counters.fallbacks == 3
    assert sum("per-process" in r.message or "this process" in r.message for r in caplog.records) == 1
    await counters.aclose()


def rate(name: str, limit: float, cost: float) -> Check:
    return Check("rate", name, limit, cost, 60.0)


async def test_a_large_limit_is_leased_so_most_requests_ask_redis_nothing(
    redis_url: str, clock: Clock
) -> None:
    counters = RedisCounters(redis_url, clock=clock, timeout=10, lease_share=0.01)
    try:
        verdicts = [await counters.admit([rpm(10_000)], f"r{i}") for i in range(1000)]
        assert all(v.admitted for v in verdicts)
        assert counters.round_trips == 10  # one lease of 100 requests per round trip
        assert 0 < verdicts[-1].remaining[0] <= 10_000 - 1000
    finally:
        await counters.aclose()


async def test_small_limits_ask_redis_for_every_request(redis_url: str, clock: Clock) -> None:
    counters = RedisCounters(redis_url, clock=clock, timeout=10, lease_share=0.01)
    try:
        for i in range(50):  # a lease of 1% of 300 would cover fewer than 4 requests
            assert (await counters.admit([rpm(300)], f"r{i}")).admitted
        assert counters.round_trips == 50
    finally:
        await counters.aclose()


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_leasing_replicas_never_admit_more_than_the_limit(
    redis_url: str, clock: Clock, seed: int
) -> None:
    """Three replicas lease shares of one request limit, one token limit and one budget; requests
    land on random replicas and settle to random real costs. What is admitted never exceeds any
    limit (leases are counted in Redis before they are used: no slack above the limit), and when
    refusals start at most one lease per replica (3 x 1%) of a limit is left unused."""
    import random

    rng = random.Random(seed)
    clock.now = 1_800_000_000.0 // 60 * 60 + 1  # early in a window: the whole run sits in one bucket
    replicas = [RedisCounters(redis_url, clock=clock, timeout=10, lease_share=0.01) for _ in range(3)]
    limits = {"rpm": 2000.0, "tpm": 60_000.0, "usd": 3.0}
    used = dict.fromkeys(limits, 0.0)
    refused = 0
    try:
        for i in range(2600):
            reserve = rng.randint(10, 40)
            checks = [
                rate("rpm:key:lease", limits["rpm"], 1),
                rate("tpm:key:lease", limits["tpm"], reserve),
                Check("budget", "usd:key:lease:0", limits["usd"], reserve * 1e-4, 3600.0),
            ]
            replica = replicas[rng.randrange(3)]
            verdict = await replica.admit(checks, f"r{i}")
            if not verdict.admitted:
                refused += 1
                continue
            real = rng.randint(1, reserve)
            replica.settle(
                [(checks[1], real - reserve), (checks[2], (real - reserve) * 1e-4)], f"r{i}", clock.now
            )
            used["rpm"] += 1
            used["tpm"] += real
            used["usd"] += real * 1e-4
            assert all(used[k] <= limits[k] + 1e-9 for k in limits)
        assert refused > 0  # the run did reach a limit
        # the limit that refused was nearly used up: idle leases hold at most 3 x 1% of it
        assert any(used[k] >= limits[k] * (1 - 0.03) - 40 * (1e-4 if k == "usd" else 1) for k in limits)
    finally:
        for replica in replicas:
            await replica.aclose()


async def test_a_closing_replica_gives_its_lease_back(redis_url: str, clock: Clock) -> None:
    leasing = RedisCounters(redis_url, clock=clock, timeout=10, lease_share=0.1)
    exact = RedisCounters(redis_url, clock=clock, timeout=10, lease_share=0)
    try:
        assert (await leasing.admit([rpm(100)], "r0")).admitted  # Redis now counts 1 + a lease of 10
        await leasing.aclose()  # the 10 go back
        assert all([(await exact.admit([rpm(100)], f"x{i}")).admitted for i in range(99)])
        assert not (await exact.admit([rpm(100)], "x99")).admitted
    finally:
        await exact.aclose()


async def test_an_idle_lease_expires_and_goes_back(redis_url: str, clock: Clock) -> None:
    leasing = RedisCounters(redis_url, clock=clock, timeout=10, lease_share=0.1, lease_ttl=0.05)
    exact = RedisCounters(redis_url, clock=clock, timeout=10, lease_share=0)
    try:
        clock.now = 1_800_000_000.0 // 60 * 60 + 1
        assert (await leasing.admit([rpm(100)], "r0")).admitted
        clock.now += 1  # past the lease's ttl, same window
        for _ in range(200):
            if not leasing._leases:
                break
            await asyncio.sleep(0.01)
        await leasing.flush()
        assert all([(await exact.admit([rpm(100)], f"x{i}")).admitted for i in range(99)])
    finally:
        await leasing.aclose()
        await exact.aclose()
