"""The ``pool`` section: a `provider: pool` group needs it, and each key is checked at load time."""

from __future__ import annotations

from typing import Any

import pytest

from thrifty.config import parse_config
from thrifty.errors import ConfigError
from thrifty.pool import build_pool
from thrifty.pool.settings import parse_pool

GROUP = {"name": "lan", "deployments": [{"provider": "pool", "model": "smollm2"}]}


def test_a_pool_group_with_its_section_parses() -> None:
    config = parse_config(
        {"models": [GROUP], "pool": {"redis_url": "redis://127.0.0.1:6379/0", "heartbeat": 2}}
    )
    settings = parse_pool(config)
    assert settings is not None and settings.silence == 2.5 and settings.sweep == 0.25
    assert build_pool(parse_config({})) is None


@pytest.mark.parametrize(
    ("pool", "key"),
    [
        (None, "pool"),
        ({"redis_url": "http://x"}, "pool.redis_url"),
        ({"redis_url": "redis://h", "grace": 1}, "pool.grace"),
        ({"redis_url": "redis://h", "heartbeat": 0}, "pool.heartbeat"),
        ({"redis_url": "redis://h", "prefix": ""}, "pool.prefix"),
        ({"redis_url": "redis://h", "colour": 1}, "pool.colour"),
        ("redis://h", "pool"),
    ],
)
def test_a_bad_pool_section_names_its_key(pool: Any, key: str) -> None:
    data: dict[str, Any] = {"models": [GROUP]}
    if pool is not None:
        data["pool"] = pool
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert caught.value.param == key


def test_a_pool_deployment_is_free_unless_priced() -> None:
    from thrifty.prices import LOCAL, lookup

    config = parse_config({"models": [GROUP], "pool": {"redis_url": "redis://h"}})
    assert lookup(config.models[0].deployments[0]) == LOCAL
