"""Bad balance config is refused at startup with file and key named."""

from __future__ import annotations

from typing import Any

import pytest

from thrifty.balance import build_group, parse_group, parse_section
from thrifty.config import parse_config
from thrifty.errors import ConfigError
from thrifty.testing import FakeBackend


def config(balance: Any = None, **group: Any) -> Any:
    data: dict[str, Any] = {"models": [{"name": "g", "deployments": [{"model": "fake/a"}], **group}]}
    if balance is not None:
        data["balance"] = balance
    return parse_config(data, source="conf.yaml")


def test_defaults_and_section_values() -> None:
    settings = parse_section(config({"strategy": "p2c", "retries": 4, "breaker": {"cooldown": 3}}))
    assert settings.strategy == "p2c" and settings.retry.retries == 4
    assert settings.breaker.cooldown == 3 and settings.breaker.failures == 5


def test_group_options_override_the_section() -> None:
    cfg = config({"strategy": "p2c", "hedge": False}, strategy="affinity", hedge=True, cache="ignored")
    settings = parse_group(cfg, cfg.models[0])
    assert settings.strategy == "affinity" and settings.hedge is True


@pytest.mark.parametrize(
    ("balance", "message"),
    [
        ({"strategy": "fastest"}, "conf.yaml: balance.strategy: must be one of"),
        ({"retries": -1}, "conf.yaml: balance.retries: must be an integer >= 0"),
        ({"breaker": {"failures": 0}}, "conf.yaml: balance.breaker.failures: must be a positive integer"),
        ({"breaker": {"cooldwn": 1}}, "conf.yaml: balance.breaker.cooldwn: unknown setting"),
        ({"retires": 2}, "conf.yaml: balance.retires: unknown setting"),
        ({"hedge": "yes"}, "conf.yaml: balance.hedge: must be true or false"),
        ({"hedge_quantile": 1.5}, "conf.yaml: balance.hedge_quantile: must be between 0 and 1"),
        ([1], "conf.yaml: balance: must be a mapping"),
    ],
)
def test_section_errors_name_file_and_key(balance: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("[", r"\[")):
        parse_section(config(balance))


def test_group_error_names_the_group() -> None:
    cfg = config(timeout=-2)
    with pytest.raises(ConfigError, match=r"conf\.yaml: models\[name=g\]\.timeout: must be a positive"):
        parse_group(cfg, cfg.models[0])


def test_max_queue_needs_a_concurrency_limit() -> None:
    cfg = config(max_queue=10)
    with pytest.raises(ConfigError, match="max_queue: needs max_concurrency"):
        build_group(cfg.models[0], [FakeBackend(name="a")], cfg)


def test_backends_must_match_deployments() -> None:
    cfg = config()
    with pytest.raises(ConfigError, match="got 2 backends for 1 deployments"):
        build_group(cfg.models[0], [FakeBackend(name="a"), FakeBackend(name="b")], cfg)
