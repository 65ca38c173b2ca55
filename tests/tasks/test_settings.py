"""The `tasks` config section: parsed into typed settings, errors name file and key."""

from __future__ import annotations

import pytest

from thrifty.config import parse_config
from thrifty.errors import ConfigError
from thrifty.tasks import AimdLimit
from thrifty.tasks.settings import TasksConfig, parse_tasks


def tasks(section: object) -> TasksConfig:
    return parse_tasks(parse_config({"tasks": section}, source="thrifty.yaml"))


def test_defaults_without_a_section() -> None:
    settings = parse_tasks(parse_config({}, source="thrifty.yaml"))
    assert settings == TasksConfig()
    assert settings.limit() == 64


def test_a_full_section() -> None:
    settings = tasks(
        {
            "concurrency": "auto",
            "adaptive": {"initial": 8, "maximum": 128},
            "model_limits": {"gpt-4o-mini": 16},
            "retries": 3,
            "timeout": 30,
            "batch": {"max_requests": 1000},
            "ray": {"address": "127.0.0.1:6379", "resources": {"smollm2": {"local_model": 1}}},
        }
    )
    limit = settings.limit()
    assert isinstance(limit, AimdLimit) and limit.limit == 8 and limit.settings.maximum == 128
    assert settings.model_limits == {"gpt-4o-mini": 16}
    assert (settings.retries, settings.timeout, settings.max_requests) == (3, 30.0, 1000)
    assert settings.ray_resources == {"smollm2": {"local_model": 1.0}}


@pytest.mark.parametrize(
    ("section", "key", "problem"),
    [
        ({"concurrency": 0}, "tasks.concurrency", "positive integer or 'auto'"),
        ({"concurrncy": 4}, "tasks.concurrncy", "unknown setting"),
        ({"model_limits": {"m": -1}}, "tasks.model_limits.m", "positive integer"),
        ({"batch": {"max_requests": "lots"}}, "tasks.batch.max_requests", "positive integer"),
        ({"concurrency": "auto", "adaptive": {"initial": 0}}, "tasks.adaptive", "minimum <= initial"),
        ({"ray": {"resources": {"m": {"gpu": 0}}}}, "tasks.ray.resources.m.gpu", "positive number"),
        ({"timeout": -5}, "tasks.timeout", "positive number"),
    ],
)
def test_bad_values_name_file_and_key(section: object, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        tasks(section)
    assert err.value.message.startswith(f"thrifty.yaml: {key}: ")
    assert problem in err.value.message
