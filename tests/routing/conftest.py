"""Shared builders for routing tests: a config with three fake tiers."""

from __future__ import annotations

from typing import Any

import pytest

from thrifty.config import Config, parse_config


def make_config(routing: dict[str, Any] | None = None, **extra: Any) -> Config:
    data: dict[str, Any] = {
        "models": [
            {"name": "small", "deployments": [{"provider": "fake", "model": "small"}]},
            {"name": "medium", "deployments": [{"provider": "fake", "model": "medium"}]},
            {"name": "large", "deployments": [{"provider": "fake", "model": "large"}]},
        ]
    }
    if routing is not None:
        data["routing"] = routing
    data.update(extra)
    return parse_config(data, source="thrifty.yaml")


TIERS = [
    {"name": "fast", "model": "small", "price": {"input": 0.1, "output": 0.2}},
    {"name": "balanced", "model": "medium", "price": {"input": 1.0, "output": 2.0}},
    {"name": "powerful", "model": "large", "price": {"input": 10.0, "output": 30.0}},
]


@pytest.fixture
def tiers() -> list[dict[str, Any]]:
    return [dict(t) for t in TIERS]
