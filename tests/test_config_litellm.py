"""A LiteLLM proxy config carries over: master key, environment, aliases, params, Azure, Ollama."""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any

import httpx
import pytest

from thrifty.config import Config, parse_config
from thrifty.errors import ConfigError
from thrifty.gateway import Gateway
from thrifty.providers.anthropic import AnthropicBackend
from thrifty.providers.openai import OpenAIBackend
from thrifty.server.app import create_app
from thrifty.testing import chat
from thrifty.transport.mock import MockResponse, MockTransport

ANSWER = {
    "id": "x",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def entry(name: str, **params: Any) -> dict[str, Any]:
    return {"model_name": name, "litellm_params": params}


def only_deployment(config: Config) -> Any:
    return config.models[0].deployments[0]


def test_master_key_becomes_an_admin_key() -> None:
    config = parse_config(
        {
            "general_settings": {"master_key": "os.environ/MASTER"},
            "model_list": [entry("m", model="openai/x")],
        },
        environ={"MASTER": "sk-master"},
    )
    assert config.server.api_keys == ("sk-master",)
    with pytest.raises(
        ConfigError, match="general_settings.master_key: environment variable MASTER is not set"
    ):
        parse_config({"general_settings": {"master_key": "os.environ/MASTER"}}, environ={})


async def test_the_master_key_opens_admin_routes_and_nothing_else_does() -> None:
    config = parse_config(
        {
            "general_settings": {"master_key": "sk-master"},
            "server": {"data_dir": tempfile.mkdtemp(prefix="thrifty-")},
        }
    )
    app = create_app(Gateway(config, observe=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/admin/status")).status_code == 401
        ok = await client.get("/admin/status", headers={"authorization": "Bearer sk-master"})
        assert ok.status_code == 200


def test_environment_variables_resolve_secrets_without_touching_the_environment() -> None:
    assert "THRIFTY_TEST_UPSTREAM_KEY" not in os.environ
    config = parse_config(
        {
            "environment_variables": {
                "THRIFTY_TEST_UPSTREAM_KEY": "sk-from-config",
                "BASE": "os.environ/REAL_BASE",
            },
            "model_list": [
                entry(
                    "m",
                    model="openai/x",
                    api_key="os.environ/THRIFTY_TEST_UPSTREAM_KEY",
                    api_base="os.environ/BASE",
                )
            ],
        },
        environ={"REAL_BASE": "http://127.0.0.1:9/v1"},
    )
    dep = only_deployment(config)
    assert dep.api_key == "sk-from-config" and dep.api_base == "http://127.0.0.1:9/v1"
    assert "THRIFTY_TEST_UPSTREAM_KEY" not in os.environ


async def test_model_group_alias_names_the_same_group() -> None:
    config = parse_config(
        {
            "server": {"data_dir": tempfile.mkdtemp(prefix="thrifty-")},
            "model_list": [entry("gpt-4o", model="fake/answer")],
            "router_settings": {
                "model_group_alias": {"gpt-4": "gpt-4o", "old": {"model": "gpt-4o", "hidden": True}}
            },
        }
    )
    gateway = Gateway(config, observe=False)
    assert gateway.models() == ["gpt-4o", "gpt-4"]
    assert gateway.resolve("old") is gateway.resolve("gpt-4o") is gateway.resolve("gpt-4")
    with pytest.raises(ConfigError, match="model_group_alias.x: names no model group 'nope'"):
        parse_config(
            {
                "model_list": [entry("a", model="fake/a")],
                "router_settings": {"model_group_alias": {"x": "nope"}},
            }
        )


async def test_litellm_params_defaults_go_upstream_and_the_request_wins() -> None:
    config = parse_config(
        {
            "model_list": [
                entry(
                    "m",
                    model="openai/gpt-4o-mini",
                    api_base="http://127.0.0.1:9/v1",
                    temperature=0.1,
                    max_tokens=50,
                    extra_headers={"x-team": "blue"},
                    organization="org-42",
                )
            ]
        }
    )
    transport = MockTransport(lambda request: MockResponse(json=ANSWER))
    backend = OpenAIBackend(only_deployment(config), transport)
    await backend.complete(chat("hello"))
    await backend.complete(chat("hello", temperature=0.9))
    first, second = (r.json() for r in transport.requests)
    assert first["temperature"] == 0.1 and first["max_tokens"] == 50
    assert second["temperature"] == 0.9 and second["max_tokens"] == 50
    headers = transport.requests[0].headers
    assert headers["x-team"] == "blue" and headers["OpenAI-Organization"] == "org-42"


async def test_litellm_params_defaults_reach_an_anthropic_upstream_too() -> None:
    config = parse_config(
        {"model_list": [entry("c", model="anthropic/claude-x", api_key="k", max_tokens=77, temperature=0.3)]}
    )
    answer = {
        "id": "msg",
        "type": "message",
        "role": "assistant",
        "model": "claude-x",
        "stop_reason": "end_turn",
        "content": [{"type": "text", "text": "hi"}],
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    transport = MockTransport(lambda request: MockResponse(json=answer))
    await AnthropicBackend(only_deployment(config), transport).complete(chat("hello"))
    sent = transport.requests[0].json()
    assert sent["max_tokens"] == 77 and sent["temperature"] == 0.3


async def test_azure_deployments_use_azures_url_shape_and_key_header() -> None:
    config = parse_config(
        {
            "model_list": [
                entry(
                    "gpt",
                    model="azure/my-gpt4o",
                    api_base="https://acme.openai.azure.com/",
                    api_version="2024-06-01",
                    api_key="az-key",
                )
            ]
        }
    )
    dep = only_deployment(config)
    assert dep.api_base == "https://acme.openai.azure.com/openai/deployments/my-gpt4o"
    transport = MockTransport(lambda request: MockResponse(json=ANSWER))
    await OpenAIBackend(dep, transport).complete(chat("hello"))
    sent = transport.requests[0]
    assert (
        sent.url
        == "https://acme.openai.azure.com/openai/deployments/my-gpt4o/chat/completions?api-version=2024-06-01"
    )
    assert sent.headers["api-key"] == "az-key" and "authorization" not in sent.headers
    with pytest.raises(ConfigError, match="azure/ deployments need api_base"):
        parse_config({"model_list": [entry("gpt", model="azure/x")]}, environ={})


@pytest.mark.parametrize("prefix", ["ollama", "ollama_chat"])
def test_ollama_with_litellms_base_url_posts_to_v1(prefix: str) -> None:
    config = parse_config(
        {"model_list": [entry("l", model=f"{prefix}/llama3", api_base="http://127.0.0.1:11434")]}
    )
    assert only_deployment(config).api_base == "http://127.0.0.1:11434/v1"


def test_an_unknown_top_level_key_stops_startup_naming_it() -> None:
    with pytest.raises(ConfigError, match="modle_list: unknown section"):
        parse_config({"modle_list": []}, source="litellm.yaml")


def test_keys_not_acted_on_are_listed_in_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    data = {
        "model_list": [entry("m", model="openai/x", input_cost_per_token=0.1)],
        "litellm_settings": {"drop_params": True, "num_retries": 2},
        "general_settings": {"database_url": "postgres://x", "master_key": "sk-1"},
    }
    with caplog.at_level(logging.WARNING, logger="thrifty.config"):
        config = parse_config(data, source="proxy.yaml")
    assert config.ignored == (
        "litellm_settings.drop_params",
        "general_settings.database_url",
        "model_list[0].litellm_params.input_cost_per_token",
    )
    warnings = [r for r in caplog.records if r.name == "thrifty.config"]
    assert len(warnings) == 1 and "general_settings.database_url" in warnings[0].getMessage()
