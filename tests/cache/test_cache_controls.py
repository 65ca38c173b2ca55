"""Per-request controls and the config section: accepted shapes, and errors that name the problem."""

from __future__ import annotations

from typing import Any

import pytest

from thrifty.cache import build_store, wrap_cache
from thrifty.cache.layer import CacheLayer
from thrifty.cache.options import RequestCache, request_cache
from thrifty.cache.settings import parse_settings
from thrifty.config import parse_config
from thrifty.errors import ConfigError, InvalidRequest
from thrifty.testing import FakeBackend


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, RequestCache()),
        ("no-cache", RequestCache(no_cache=True)),
        ("No-Store , ttl=60, namespace=team-a", RequestCache(no_store=True, ttl=60.0, namespace="team-a")),
        ("semantic", RequestCache(semantic=True)),
        ("no-semantic", RequestCache(semantic=False)),
        ({"no_cache": True, "ttl": 5, "namespace": "x"}, RequestCache(no_cache=True, ttl=5.0, namespace="x")),
        (False, RequestCache(no_cache=True, no_store=True)),
    ],
)
def test_controls_from_header_or_body(raw: Any, expected: RequestCache) -> None:
    assert request_cache({"cache": raw} if raw is not None else {}) == expected


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("no-cach", "unknown directive 'no-cach'"),
        ("ttl=0", "ttl must be a positive number"),
        ("ttl=abc", "ttl must be a positive number"),
        ("colour=red", "unknown setting 'colour'"),
        ("namespace=a b", "namespace"),
        ("semantic, no-semantic", "contradict"),
        ({"ttl": "60"}, "ttl must be a positive number"),
        ({"nocache": True}, "unknown option 'nocache'"),
        ({"no_store": "yes"}, "no_store must be true or false"),
        (42, "must be an object"),
    ],
)
def test_malformed_controls_name_the_problem(raw: Any, words: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        request_cache({"cache": raw})
    assert info.value.param == "x-thrifty-cache"
    assert words in info.value.message


def config(data: dict[str, Any]) -> Any:
    base = {"models": [{"name": "fast", "deployments": [{"provider": "fake", "model": "m"}]}]}
    base.update(data)
    return parse_config(base, source="thrifty.yaml")


def test_no_cache_section_leaves_the_backend_unwrapped() -> None:
    cfg = config({})
    backend = FakeBackend()
    assert build_store(cfg) is None
    assert wrap_cache(backend, cfg.models[0], cfg, None) is backend


def test_section_and_group_options_combine(tmp_path: Any) -> None:
    cfg = config(
        {
            "server": {"data_dir": str(tmp_path)},
            "cache": {"ttls": {"l1": 30}, "threshold": 0.95, "redis_url": "redis://127.0.0.1:1/0"},
            "models": [
                {
                    "name": "fast",
                    "deployments": [{"provider": "fake", "model": "m"}],
                    "cache": {"semantic": True, "ttl": 600},
                },
                {"name": "slow", "deployments": [{"provider": "fake", "model": "m"}], "cache": False},
            ],
        }
    )
    fast = parse_settings(cfg, cfg.models[0])
    assert fast.enabled and fast.semantic and fast.threshold == 0.95
    assert fast.ttls == (600.0, 600.0, 600.0)
    assert fast.store.l2_path == str(tmp_path / "cache.sqlite3")
    assert not parse_settings(cfg, cfg.models[1]).enabled
    store = build_store(cfg)
    assert store is not None and store.settings == fast.store
    layers = [wrap_cache(FakeBackend(), g, cfg, store) for g in cfg.models]
    assert isinstance(layers[0], CacheLayer) and not isinstance(layers[1], CacheLayer)


@pytest.mark.parametrize(
    ("section", "key", "words"),
    [
        ({"threshold": 1.5}, "cache.threshold", "(0, 1]"),
        ({"ttls": {"l4": 3}}, "cache.ttls.l4", "unknown setting"),
        ({"ttl": -1}, "cache.ttl", "positive"),
        ({"redis_url": "http://x"}, "cache.redis_url", "redis://"),
        ({"semantic": "yes"}, "cache.semantic", "true or false"),
        ({"treshold": 0.9}, "cache.treshold", "unknown setting"),
        ({"l1_bytes": 0}, "cache.l1_bytes", "positive integer"),
    ],
)
def test_config_errors_name_file_and_key(section: dict[str, Any], key: str, words: str) -> None:
    cfg = config({"cache": section})
    with pytest.raises(ConfigError) as info:
        parse_settings(cfg, cfg.models[0])
    assert info.value.message.startswith(f"thrifty.yaml: {key}: ")
    assert words in info.value.message


def test_group_option_errors_name_the_group() -> None:
    cfg = config(
        {
            "models": [
                {
                    "name": "fast",
                    "deployments": [{"provider": "fake", "model": "m"}],
                    "cache": {"semantc": True},
                }
            ]
        }
    )
    with pytest.raises(ConfigError, match=r"thrifty.yaml: models\[0\].cache.semantc: unknown setting"):
        parse_settings(cfg, cfg.models[0])
