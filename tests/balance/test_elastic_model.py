"""An elastic group over real embedded-model replicas (``thrifty serve`` children): one more under load, back when quiet."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

import pytest

from thrifty import providers
from thrifty.balance import build_group
from thrifty.balance.elastic import ElasticGroup
from thrifty.balance.replicas import replica_config
from thrifty.config import default_config
from thrifty.testing import chat

pytestmark = pytest.mark.model


async def wait_for(condition: Callable[[], bool], seconds: float = 240) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition never became true")


async def test_embedded_replicas_scale_up_warmed_and_back_down(tmp_path: object) -> None:
    base = default_config()
    local = base.models[0]
    autoscale = {
        "min_replicas": 1,
        "max_replicas": 2,
        "target_in_flight": 1,
        "window_s": 1,
        "quiet_s": 1,
        "interval_s": 0.2,
    }
    local = dataclasses.replace(local, options={**local.options, "autoscale": autoscale})
    server = dataclasses.replace(base.server, data_dir=str(tmp_path))
    config = replica_config(dataclasses.replace(base, models=(local,), server=server), 0)
    spec = config.models[0]
    group = build_group(spec, [providers.build(d) for d in spec.deployments], config)
    assert isinstance(group, ElasticGroup)
    await group.start()
    try:
        assert group.count("ready") == 1 and group.slots[0].warm_s is not None
        stop = asyncio.Event()

        async def client() -> None:
            while not stop.is_set():
                answer = await group.complete(
                    chat("Name a colour.", model=spec.name, max_tokens=8, temperature=0)
                )
                assert answer.usage.completion_tokens > 0

        clients = [asyncio.ensure_future(client()) for _ in range(3)]
        await wait_for(lambda: group.count("ready") == 2)
        await wait_for(lambda: group.slots[1].first_served_s is not None)
        stop.set()
        await asyncio.gather(*clients)
        await wait_for(lambda: group.count("ready") == 1 and group.count("draining") == 0)
        scaling = group.status()["scaling"]
        assert [d["rule"] for d in scaling["decisions"]][-1] == "demand"
        assert scaling["replicas"][1]["warm_s"] > 0
    finally:
        await group.aclose()
