"""Build balanced groups from FakeBackends with a fake clock."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from thrifty.backend import Backend
from thrifty.balance import Balancer, FakeClock, build_group
from thrifty.config import Config, parse_config

MakeGroup = Callable[..., Balancer]


def group_config(
    names: Sequence[str],
    deployment: dict[str, Any] | None = None,
    balance: dict[str, Any] | None = None,
    group: str = "g",
    **options: Any,
) -> Config:
    deps = [{"model": f"fake/{n}", "name": n, **(deployment or {}).get(n, {})} for n in names]
    data: dict[str, Any] = {"models": [{"name": group, "deployments": deps, **options}]}
    if balance is not None:
        data["balance"] = balance
    return parse_config(data, source="test.yaml")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_group(clock: FakeClock) -> MakeGroup:
    def make(
        backends: Sequence[Backend],
        *,
        deployment: dict[str, Any] | None = None,
        balance: dict[str, Any] | None = None,
        seed: int = 1,
        **options: Any,
    ) -> Balancer:
        config = group_config([b.name for b in backends], deployment, balance, **options)
        built = build_group(config.models[0], backends, config, clock=clock, rng=random.Random(seed))
        assert isinstance(built, Balancer)
        return built

    return make
