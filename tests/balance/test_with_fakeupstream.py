"""The balancer over real HTTP: provider backends against misbehaving fake upstreams."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from thrifty import providers
from thrifty.backend import Backend
from thrifty.balance import Balancer, build_group
from thrifty.config import parse_config
from thrifty.errors import UpstreamError
from thrifty.fakeupstream import FakeUpstream
from thrifty.testing import chat
from thrifty.types import parsed


@contextlib.asynccontextmanager
async def group_over(*ups: FakeUpstream, **options: Any) -> AsyncIterator[Balancer]:
    deps = [{"model": "openai_compatible/m", "api_base": up.url, "name": up.name} for up in ups]
    config = parse_config(
        {"models": [{"name": "g", "deployments": deps, "health_check": False, **options}]}, source="t.yaml"
    )
    backends: list[Backend] = [providers.build(d) for d in config.models[0].deployments]
    group = build_group(config.models[0], backends, config)
    assert isinstance(group, Balancer)
    await group.start()
    try:
        yield group
    finally:
        await group.aclose()


async def test_one_failing_replica_costs_no_client_errors() -> None:
    async with (
        FakeUpstream(name="a") as a,
        FakeUpstream(name="b") as b,
        FakeUpstream(name="bad", error_rate=0.3, error_status=503, seed=3) as bad,
        group_over(a, b, bad, strategy="round_robin") as group,
    ):
        results = [await group.complete(chat(f"q{i}")) for i in range(60)]
    assert len(results) == 60 and bad.stats.errors > 0
    assert a.stats.completed + b.stats.completed + bad.stats.completed == 60


async def test_429_burst_and_resets_are_retried_elsewhere() -> None:
    async with (
        FakeUpstream(name="limited", burst_429=5, retry_after=1) as limited,
        FakeUpstream(name="resets", reset_rate=1.0) as resets,
        FakeUpstream(name="fine") as fine,
        group_over(
            limited, resets, fine, strategy="round_robin", retries=2, breaker={"failures": 100}
        ) as group,
    ):
        texts = [(await group.complete(chat("hi"))).text for _ in range(12)]
        status = group.status()["deployments"]
    assert texts == ["ok " * 7 + "ok"] * 12
    assert limited.stats.rate_limited >= 1 and resets.stats.resets >= 1
    assert status["resets"]["failed"] >= 1


async def test_mid_stream_drop_raises_after_chunks_were_sent() -> None:
    async with (
        FakeUpstream(name="drops", chunks=20, drop_after_chunks=4) as drops,
        group_over(drops, retries=3) as group,
    ):
        request = chat("hi")
        request.stream = True
        seen = 0
        with pytest.raises(UpstreamError):
            async for _ in group.stream(request):
                seen += 1
    assert seen >= 1 and drops.stats.requests == 1  # never re-sent after output began


async def test_slow_first_byte_hits_the_first_token_timeout_and_fails_over() -> None:
    async with (
        FakeUpstream(name="slow", first_byte_ms=5000) as slow,
        FakeUpstream(name="quick") as quick,
        group_over(slow, quick, strategy="round_robin", first_token_timeout=0.2) as group,
    ):
        group.strategy.turn = -1  # type: ignore[attr-defined]
        request = chat("hi")
        request.stream = True
        chunks = [parsed(c) async for c in group.stream(request)]
    assert chunks[-1]["usage"] and request.trace.deployment == "quick"
    assert slow.stats.requests == 1 and quick.stats.completed == 1
