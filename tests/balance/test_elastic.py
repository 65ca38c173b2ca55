"""Elastic groups with real replica processes (the fake upstream): up under load, down when quiet, zero and back."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import Any

import pytest

from thrifty import providers
from thrifty.balance import build_group
from thrifty.balance.elastic import ElasticGroup
from thrifty.balance.replicas import replica_config, wants_replicas
from thrifty.config import ModelGroup, parse_config
from thrifty.errors import ConfigError
from thrifty.testing import chat


def fake_child(latency_ms: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "thrifty.fakeupstream",
        "--port",
        "{port}",
        "--name",
        "r{index}",
        "--text",
        "from-replica",
        "--latency-ms",
        str(latency_ms),
    ]


def elastic_group(autoscale: dict[str, Any], latency_ms: int = 0, **group: Any) -> ElasticGroup:
    base = parse_config(
        {
            "models": [
                {
                    "name": "local",
                    "deployments": [{"provider": "local", "model": "m"}],
                    "autoscale": autoscale,
                    **group,
                }
            ]
        },
        source="c.yaml",
    )
    assert wants_replicas(base)
    config = replica_config(base, 0)
    spec = config.models[0]
    options = dict(spec.options)
    options["replicas"] = {**options["replicas"], "command": fake_child(latency_ms)}
    spec = ModelGroup(name=spec.name, deployments=spec.deployments, options=options)
    built = build_group(spec, [providers.build(d) for d in spec.deployments], config)
    assert isinstance(built, ElasticGroup)
    return built


async def wait_for(condition: Callable[[], bool], rounds: int = 1500) -> None:
    for _ in range(rounds):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition never became true")


def running(group: ElasticGroup) -> list[int]:
    return [r.index for r in group.supervisor.replicas if r.process and r.process.returncode is None]


async def test_scales_up_under_load_and_down_when_quiet() -> None:
    group = elastic_group(
        {
            "min_replicas": 1,
            "max_replicas": 3,
            "target_in_flight": 1,
            "window_s": 0.5,
            "quiet_s": 0.5,
            "interval_s": 0.1,
        },
        latency_ms=150,
    )
    await group.start()
    try:
        assert group.count("ready") == 1 and running(group) == [0]
        assert group.slots[0].warm_s is not None  # warmed before it took traffic
        stop = asyncio.Event()

        async def client() -> int:
            served = 0
            while not stop.is_set():
                answer = await group.complete(chat("hi"))
                assert answer.text.startswith("from-replica")
                served += 1
            return served

        clients = [asyncio.ensure_future(client()) for _ in range(4)]
        await wait_for(lambda: group.count("ready") == 3)
        await wait_for(lambda: all(s.first_served_s is not None for s in group.slots))
        stop.set()
        served = await asyncio.gather(*clients)
        assert sum(served) > 0
        await wait_for(lambda: group.count("ready") == 1 and group.count("draining") == 0)
        assert len(running(group)) == 1
        rules = [d["rule"] for d in group.status()["scaling"]["decisions"]]
        assert "demand" in rules and "quiet" in rules
        scaling = group.status()["scaling"]
        assert scaling["start_to_first_served_s"] > 0 and scaling["max_replicas"] == 3
    finally:
        await group.aclose()
    assert running(group) == []


async def test_scales_to_zero_and_a_request_waits_for_the_cold_start() -> None:
    group = elastic_group(
        {"min_replicas": 0, "max_replicas": 2, "idle_to_zero_s": 0.3, "interval_s": 0.1, "window_s": 0.2}
    )
    await group.start()
    try:
        assert running(group) == [] and group.count("ready") == 0  # min_replicas 0: none at start
        answer = await asyncio.wait_for(group.complete(chat("wake up")), 60)
        assert answer.text.startswith("from-replica")
        chunks = [c async for c in group.stream(chat("again", stream=True))]
        assert chunks
        await wait_for(lambda: group.count("ready", "warming", "draining") == 0)
        assert running(group) == []
        rules = [d["rule"] for d in group.status()["scaling"]["decisions"]]
        assert rules == ["idle", "cold_start"]  # newest first
        answer = await asyncio.wait_for(group.complete(chat("and back")), 60)
        assert answer.text.startswith("from-replica")
    finally:
        await group.aclose()


async def test_a_replica_that_fails_its_warm_up_never_takes_traffic() -> None:
    group = elastic_group({"min_replicas": 1, "max_replicas": 1, "interval_s": 0.1})
    group.supervisor.spec = type(group.supervisor.spec)(
        **{**group.supervisor.spec.__dict__, "command": (*fake_child(0), "--error-rate", "1.0")}
    )
    await group.start()
    try:
        assert group.count("ready") == 0 and group.slots[0].state == "stopped"
        assert running(group) == []
        await group.step()  # the policy wants one, but starts back off after a failure
        assert group.count("warming", "ready") == 0 and not group.decisions
    finally:
        await group.aclose()


def test_autoscale_must_match_the_replica_slots() -> None:
    base = parse_config(
        {
            "models": [
                {
                    "name": "local",
                    "deployments": [{"provider": "local", "model": "m"}],
                    "autoscale": {"max_replicas": 2},
                }
            ]
        },
        source="c.yaml",
    )
    config = replica_config(base, 0)
    spec = config.models[0]
    options = {**spec.options, "autoscale": {"max_replicas": 3}}
    spec = ModelGroup(name=spec.name, deployments=spec.deployments, options=options)
    with pytest.raises(ConfigError, match=r"autoscale.max_replicas: is 3 but the group has 2 replica slots"):
        build_group(spec, [providers.build(d) for d in spec.deployments], config)
