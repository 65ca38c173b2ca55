"""Health checks take self-hosted deployments out of rotation until they recover."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import pytest

from thrifty.balance import Balancer, FakeClock, build_group
from thrifty.balance.health import health_url, health_urls
from thrifty.config import Deployment, parse_config
from thrifty.errors import NoDeploymentAvailable
from thrifty.fakeupstream import FakeUpstream
from thrifty.testing import FakeBackend, chat


def dep(api_base: str | None, **options: str) -> Deployment:
    return Deployment(name="d", provider="openai", model="m", api_base=api_base, options=options)


def test_health_url_is_derived_for_self_hosted_only() -> None:
    assert health_url(dep("http://127.0.0.1:8080/v1")) == "http://127.0.0.1:8080/health"
    assert health_url(dep("http://10.0.0.5:8000")) == "http://10.0.0.5:8000/health"
    assert health_url(dep("https://api.openai.com/v1")) is None
    assert (
        health_url(dep("https://api.openai.com/v1"), only_self_hosted=False)
        == "https://api.openai.com/health"
    )
    assert health_url(dep(None, health_url="http://x/ready")) == "http://x/ready"
    assert health_url(dep(None)) is None
    assert health_urls(dep("http://127.0.0.1:11434")) == (
        "http://127.0.0.1:11434/health",
        "http://127.0.0.1:11434/models",
    )


def status_probe(state: dict[str, int | None]) -> object:
    async def probe(url: str, timeout: float) -> tuple[int | None, str]:
        status = state.get(url, 404)
        return status, "cannot connect" if status is None else f"answered {status}"

    return probe


def group_on(bases: list[str], probe: Any = None) -> Balancer:
    deps = [{"model": f"llamacpp/m{i}", "name": f"r{i}", "api_base": b} for i, b in enumerate(bases)]
    config = parse_config({"models": [{"name": "g", "deployments": deps, "retries": 0}]}, source="t.yaml")
    backends = [FakeBackend(f"r{i}", name=f"r{i}") for i in range(len(bases))]
    built = build_group(
        config.models[0], backends, config, clock=FakeClock(), rng=random.Random(0), probe=probe
    )
    assert isinstance(built, Balancer)
    return built


async def test_unhealthy_replica_gets_no_traffic_until_it_recovers() -> None:
    state: dict[str, int | None] = {"http://127.0.0.1:1/health": 200, "http://127.0.0.1:2/health": 503}
    group = group_on(["http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1"], status_probe(state))
    await group.health.check_once()
    assert {(await group.complete(chat("x"))).text for _ in range(10)} == {"r0"}
    state["http://127.0.0.1:1/health"] = None
    await group.health.check_once()
    with pytest.raises(NoDeploymentAvailable, match="unhealthy"):
        await group.complete(chat("x"))
    state["http://127.0.0.1:2/health"] = 200
    await group.health.check_once()
    assert (await group.complete(chat("x"))).text == "r1"


async def wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never became true")


async def test_background_checks_against_a_real_server() -> None:
    async with FakeUpstream() as up:
        group = group_on([up.url])
        group.health.interval = 0.01
        await group.start()
        try:
            await wait_for(lambda: up.stats.health_checks > 0)
            up.configure(healthy=False)
            await wait_for(lambda: not group.members[0].healthy)
            up.configure(healthy=True)
            await wait_for(lambda: group.members[0].healthy)
        finally:
            await group.aclose()
        checks = up.stats.health_checks
    assert group.health._task is None and checks >= 3


async def test_recovery_seen_by_the_health_check_lifts_an_open_breaker() -> None:
    state: dict[str, int | None] = {"http://127.0.0.1:1/health": 503}
    group = group_on(["http://127.0.0.1:1/v1"], status_probe(state))
    member = group.members[0]
    await group.health.check_once()
    for _ in range(5):
        member.breaker.on_failure()
    assert member.unavailable_because(1) == "unhealthy"
    state["http://127.0.0.1:1/health"] = 200
    await group.health.check_once()
    assert member.unavailable_because(1) is None  # half-open: one probe may go now


async def test_a_server_without_health_is_probed_on_models(caplog: pytest.LogCaptureFixture) -> None:
    state: dict[str, int | None] = {"http://127.0.0.1:1/v1/models": 200}
    group = group_on(["http://127.0.0.1:1/v1"], status_probe(state))
    await group.health.check_once()
    assert group.members[0].healthy
    assert group.health.targets[0].url == "http://127.0.0.1:1/v1/models"
    state["http://127.0.0.1:1/v1/models"] = 502
    with caplog.at_level("WARNING", logger="thrifty.balance"):
        await group.health.check_once()
    assert not group.members[0].healthy
    assert "r0 marked unhealthy: GET http://127.0.0.1:1/v1/models: answered 502" in caplog.text


async def test_a_server_with_neither_route_is_not_checked_and_keeps_its_traffic() -> None:
    group = group_on(["http://127.0.0.1:1/v1"], status_probe({}))  # 404 everywhere
    await group.health.check_once()
    assert group.members[0].healthy and group.health.targets == []
    assert (await group.complete(chat("x"))).text == "r0"


async def test_an_unreachable_server_is_unhealthy_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    state: dict[str, int | None] = {"http://127.0.0.1:1/health": None}
    group = group_on(["http://127.0.0.1:1/v1"], status_probe(state))
    with caplog.at_level("WARNING", logger="thrifty.balance"):
        await group.health.check_once()
    assert not group.members[0].healthy
    assert "cannot connect" in caplog.text
    assert group.health.status()["unhealthy"] == {"r0": "GET http://127.0.0.1:1/health: cannot connect"}
    state["http://127.0.0.1:1/health"] = 200  # once up, the route is found
    await group.health.check_once()
    assert group.members[0].healthy and group.health.targets[0].url == "http://127.0.0.1:1/health"


async def test_a_real_upstream_without_health_route_gets_traffic() -> None:
    """An OpenAI-compatible server on loopback that has /v1/models but no /health (issue 14)."""
    from aiohttp import web

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": []})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        group = group_on([f"http://127.0.0.1:{port}/v1"])
        await group.health.check_once()
        assert group.members[0].healthy
        assert group.health.targets[0].url == f"http://127.0.0.1:{port}/v1/models"
    finally:
        await runner.cleanup()
