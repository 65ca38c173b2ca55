"""Config: LiteLLM's model_list and thrifty's own format; errors name file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from thrifty.config import default_config, load_config, parse_config
from thrifty.errors import ConfigError

LITELLM = """
model_list:
  - model_name: gpt
    litellm_params:
      model: openai/gpt-4o-mini
      api_key: os.environ/MY_OPENAI_KEY
      rpm: 600
  - model_name: gpt
    litellm_params:
      model: deepseek/deepseek-chat
      api_key: os.environ/MY_DEEPSEEK_KEY
      weight: 2
  - model_name: claude
    litellm_params: {model: anthropic/claude-3-5-haiku-latest}
  - model_name: local
    litellm_params: {model: hosted_vllm/qwen, api_base: "http://127.0.0.1:8001/v1/"}
litellm_settings: {drop_params: true}
"""


def test_litellm_model_list_groups_deployments_and_reads_secrets(tmp_path: Path) -> None:
    path = tmp_path / "litellm.yaml"
    path.write_text(LITELLM)
    env = {"MY_OPENAI_KEY": "sk-1", "MY_DEEPSEEK_KEY": "sk-2", "ANTHROPIC_API_KEY": "sk-3"}
    config = load_config(path, environ=env)
    gpt = config.group("gpt")
    assert gpt is not None
    assert [(d.provider, d.model, d.api_key) for d in gpt.deployments] == [
        ("openai", "gpt-4o-mini", "sk-1"),
        ("openai", "deepseek-chat", "sk-2"),
    ]
    assert gpt.deployments[0].rpm == 600 and gpt.deployments[1].weight == 2
    assert gpt.deployments[1].api_base == "https://api.deepseek.com/v1"
    claude = config.group("claude")
    assert claude is not None and claude.deployments[0].api_key == "sk-3"
    local = config.group("local")
    assert local is not None and local.deployments[0].api_base == "http://127.0.0.1:8001/v1"
    assert "litellm_settings" not in config.sections


def test_thrifty_format_with_capability_sections() -> None:
    config = parse_config(
        {
            "server": {"port": 9000, "api_keys": ["${KEY}"]},
            "models": [
                {
                    "name": "fast",
                    "deployments": [{"provider": "local", "model": "smollm2"}],
                    "cache": {"semantic": True},
                }
            ],
            "cache": {"enabled": True},
        },
        environ={"KEY": "abc"},
    )
    assert config.server.port == 9000 and config.server.api_keys == ("abc",)
    fast = config.group("fast")
    assert fast is not None and fast.options == {"cache": {"semantic": True}}
    assert config.sections == {"cache": {"enabled": True}}


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        ({"server": {"port": "eighty"}}, "server.port", "integer"),
        ({"server": {"colour": 1}}, "server.colour", "unknown setting"),
        ({"models": [{"name": "x"}]}, "models[0].deployments", "at least one"),
        ({"models": [{"deployments": [{"model": "local/a"}]}]}, "models[0].name", "required"),
        (
            {"model_list": [{"model_name": "x", "litellm_params": {"model": "gpt-4o"}}]},
            "model_list[0].litellm_params.model",
            "names no provider",
        ),
        (
            {"model_list": [{"model_name": "x", "litellm_params": {"model": "nosuch/m"}}]},
            "model_list[0].litellm_params.provider",
            "unknown provider",
        ),
        (
            {"model_list": [{"model_name": "x", "litellm_params": {"model": "openai/m", "weight": -1}}]},
            "model_list[0].litellm_params.weight",
            "positive",
        ),
        (
            {
                "model_list": [
                    {"model_name": "x", "litellm_params": {"model": "openai/m", "api_key": "os.environ/NOPE"}}
                ]
            },
            "model_list[0].litellm_params.api_key",
            "NOPE is not set",
        ),
        (
            {"model_list": [{"model_name": "x", "litellm_params": {"model": "vllm/m"}}]},
            "model_list[0].litellm_params.api_base",
            "needs an api_base",
        ),
    ],
)
def test_invalid_config_names_file_key_and_problem(data: dict[str, object], key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="my.yaml", environ={})
    message = info.value.message
    assert message.startswith(f"my.yaml: {key}: "), message
    assert problem in message


def test_unreadable_and_malformed_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.yaml: cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)


def test_no_config_means_the_embedded_model() -> None:
    config = default_config()
    assert [g.name for g in config.models] == ["smollm2"]
    assert config.models[0].deployments[0].provider == "local"
    assert config.server.host == "127.0.0.1"


def test_litellm_router_settings_map_to_balance_and_fallbacks() -> None:
    config = parse_config(
        {
            "model_list": [
                {"model_name": "gpt", "litellm_params": {"model": "openai/gpt-4o", "order": 1}},
                {"model_name": "claude", "litellm_params": {"model": "anthropic/claude-3-5-haiku-latest"}},
            ],
            "router_settings": {
                "routing_strategy": "least-busy",
                "num_retries": 3,
                "allowed_fails": 2,
                "cooldown_time": 30,
                "fallbacks": [{"gpt": ["claude"]}],
            },
            "balance": {"retries": 1},
        },
        environ={"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "k"},
    )
    assert config.sections["balance"] == {
        "strategy": "least_outstanding",
        "retries": 1,
        "breaker": {"failures": 2, "cooldown": 30},
    }
    gpt = config.group("gpt")
    assert gpt is not None and gpt.options == {"fallbacks": ["claude"]} and gpt.deployments[0].order == 1
    with pytest.raises(ConfigError, match="router_settings.routing_strategy: unsupported strategy"):
        parse_config({"router_settings": {"routing_strategy": "magic"}})


def _every_section_parser(config: object) -> None:
    from thrifty.balance.settings import parse_section
    from thrifty.cache.settings import parse_settings
    from thrifty.observe.settings import parse_alerts, parse_ledger, parse_telemetry
    from thrifty.routing import parse_routing
    from thrifty.tasks.settings import parse_tasks

    for parse in (parse_section, parse_ledger, parse_alerts, parse_telemetry, parse_tasks, parse_routing):
        parse(config)  # type: ignore[arg-type]
    for group in config.models:  # type: ignore[attr-defined]
        parse_settings(config, group)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("section", "key", "value", "problem"),
    [  # one kind of value, one rule and one message, whichever capability reads it
        ("balance", "timeout", -1, "must be a positive number, got -1"),
        ("cache", "redis_timeout", -1, "must be a positive number, got -1"),
        ("ledger", "flush_ms", -1, "must be a positive number, got -1"),
        ("tasks", "timeout", -1, "must be a positive number, got -1"),
        ("balance", "max_concurrency", 2.5, "must be a positive integer, got 2.5"),
        ("cache", "l1_bytes", 2.5, "must be a positive integer, got 2.5"),
        ("ledger", "batch_rows", 2.5, "must be a positive integer, got 2.5"),
        ("alerts", "min_requests", 2.5, "must be a positive integer, got 2.5"),
        ("balance", "hedge", "yes", "must be true or false, got 'yes'"),
        ("cache", "semantic", "yes", "must be true or false, got 'yes'"),
        ("telemetry", "spans", "yes", "must be true or false, got 'yes'"),
        ("balance", "retries", -1, "must be an integer >= 0, got -1"),
        ("tasks", "retries", -1, "must be an integer >= 0, got -1"),
        ("balance", "colour", 1, "unknown setting; expected one of"),
        ("cache", "colour", 1, "unknown setting; expected one of"),
        ("ledger", "colour", 1, "unknown setting; expected one of"),
        ("tasks", "colour", 1, "unknown setting; expected one of"),
    ],
)
def test_every_settings_parser_reads_a_value_by_the_same_rule(
    section: str, key: str, value: object, problem: str
) -> None:
    config = parse_config({section: {key: value}}, source="c.yaml")
    with pytest.raises(ConfigError) as info:
        _every_section_parser(config)
    assert f"c.yaml: {section}.{key}: {problem}" in str(info.value)
