"""A LiteLLM proxy config, carried over to thrifty's terms; pure functions over the parsed YAML.

:func:`thrifty.config.parse_config` calls these for the LiteLLM parts of a
file (``docs/migrating-from-litellm.md`` lists every key and what becomes of it):

- ``environment_variables`` extend the environment that ``os.environ/VAR``
  references are resolved in (a copy: the process environment is not written);
- ``general_settings.master_key`` becomes an admin key;
- ``router_settings.model_group_alias`` names more model names for a group;
- ``litellm_params`` defaults (``temperature``, ``max_tokens``, ...) become the
  deployment's ``options.extra_body`` (a request's own values win),
  ``extra_headers`` and ``organization`` its ``options.headers``;
- ``azure/<deployment>`` becomes an OpenAI-compatible deployment on Azure's URL
  shape (``{api_base}/openai/deployments/<deployment>``, ``?api-version=``,
  ``api-key`` header).

Keys thrifty knows but does not act on are collected, for one startup warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .config import Where

# LiteLLM's parts of a config file: each is read here or in config.py.
SECTIONS = ("model_list", "litellm_settings", "general_settings", "router_settings", "environment_variables")

# Keys of each LiteLLM section thrifty acts on; any other is listed in the startup warning.
ACTED_ON: dict[str, frozenset[str]] = {
    "litellm_settings": frozenset(
        {
            "routing_strategy",
            "num_retries",
            "timeout",
            "allowed_fails",
            "cooldown_time",
            "fallbacks",
            "context_window_fallbacks",
        }
    ),
    "router_settings": frozenset(
        {
            "routing_strategy",
            "num_retries",
            "timeout",
            "allowed_fails",
            "cooldown_time",
            "fallbacks",
            "context_window_fallbacks",
            "model_group_alias",
        }
    ),
    "general_settings": frozenset({"master_key"}),
}

# litellm_params sent upstream as body defaults (the request's own value wins)
BODY_DEFAULTS = (
    "temperature",
    "max_tokens",
    "max_completion_tokens",
    "top_p",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "response_format",
    "user",
)
# litellm_params that are thrifty deployment keys already (see config._DEPLOYMENT_KEYS)
DEPLOYMENT_KEYS = frozenset(
    {
        "model",
        "api_base",
        "base_url",
        "api_key",
        "weight",
        "rpm",
        "tpm",
        "timeout",
        "stream_timeout",
        "max_parallel_requests",
        "order",
        "context_window",
        "price_model",
        "name",
        "provider",
        "options",
        "connect_timeout",
        "first_token_timeout",
        "max_concurrency",
    }
)
AZURE_API_VERSION = "2024-10-21"


@dataclass
class Carried:
    """What the LiteLLM parts of a file add to thrifty's config, and what they leave unused."""

    admin_keys: list[str] = field(default_factory=list)
    aliases: dict[str, tuple[str, bool]] = field(default_factory=dict)  # alias -> (group, hidden)
    ignored: list[str] = field(default_factory=list)  # "section.key" not acted on, for the warning


def environment(data: Mapping[str, Any], top: Where, env: Mapping[str, str]) -> Mapping[str, str]:
    """The environment for secret references: the process's, plus ``environment_variables``.

    The section's own values may be ``os.environ/VAR`` references to the process
    environment. Nothing is written to ``os.environ``.
    """
    raw = data.get("environment_variables")
    if raw is None:
        return env
    where = top / "environment_variables"
    if not isinstance(raw, dict):
        raise where.error("must be a mapping of variable names to values")
    from .config import _resolve_secrets

    added: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(value, (str, int, float, bool)) or value is None:
            raise (where / str(name)).error(f"must be a string or a number, got {value!r}")
        resolved = _resolve_secrets(value, where / str(name), env)
        added[str(name)] = str(resolved).lower() if isinstance(resolved, bool) else str(resolved)
    return {**env, **added}


def carry(data: Mapping[str, Any], top: Where) -> Carried:
    """The master key, aliases and unused keys of the (secret-resolved) LiteLLM sections."""
    out = Carried()
    for section, acted in ACTED_ON.items():
        raw = data.get(section)
        if raw is None:
            continue
        if not isinstance(raw, dict):
            raise (top / section).error("must be a mapping")
        out.ignored.extend(f"{section}.{key}" for key in raw if key not in acted)
    general = data.get("general_settings") or {}
    key = general.get("master_key")
    if key is not None:
        if not isinstance(key, str) or not key:
            raise (top / "general_settings" / "master_key").error(
                "must be a non-empty string; write master_key: os.environ/LITELLM_MASTER_KEY and set it"
            )
        out.admin_keys.append(key)
    aliases = (data.get("router_settings") or {}).get("model_group_alias")
    if aliases is not None:
        out.aliases = _aliases(aliases, top / "router_settings" / "model_group_alias")
    return out


def _aliases(raw: Any, where: Where) -> dict[str, tuple[str, bool]]:
    if not isinstance(raw, dict):
        raise where.error("must map alias names to model groups")
    out: dict[str, tuple[str, bool]] = {}
    for alias, target in raw.items():
        hidden = False
        if isinstance(target, dict):
            hidden = target.get("hidden") is True
            target = target.get("model")
        if not isinstance(target, str) or not target:
            raise (where / str(alias)).error("must be a model group name or {model: name, hidden: bool}")
        out[str(alias)] = (target, hidden)
    return out


def check_aliases(aliases: Mapping[str, tuple[str, bool]], groups: Mapping[str, Any], where: Where) -> None:
    for alias, (target, _) in aliases.items():
        if target not in groups:
            raise (where / alias).error(f"names no model group {target!r}; groups: {', '.join(groups)}")
        if alias in groups:
            raise (where / alias).error("is already a model group's name")


def deployment_params(
    params: Mapping[str, Any], where: Where, env: Mapping[str, str], ignored: list[str]
) -> dict[str, Any]:
    """``litellm_params`` as thrifty deployment keys; defaults and headers go into ``options``."""
    out: dict[str, Any] = {}
    options: dict[str, Any] = dict(params.get("options") or {})
    body = dict(options.get("extra_body") or {})
    headers = dict(options.get("headers") or {})
    for key, value in params.items():
        if key in DEPLOYMENT_KEYS:
            out[key] = value
        elif key in BODY_DEFAULTS:
            body.setdefault(key, value)
        elif key == "extra_headers":
            if not isinstance(value, dict):
                raise (where / key).error("must be a mapping of header names to values")
            headers.update({str(k): str(v) for k, v in value.items()})
        elif key == "organization":
            headers["OpenAI-Organization"] = str(value)
        elif key == "api_version":
            out[key] = value  # Azure's, read by azure_deployment
        else:
            ignored.append(f"{where.key}.{key}")
    if body:
        options["extra_body"] = body
    if headers:
        options["headers"] = headers
    if options:
        out["options"] = options
    return out


def azure_deployment(
    raw: Mapping[str, Any], deployment: str, where: Where, env: Mapping[str, str]
) -> dict[str, Any]:
    """An ``azure/<deployment>`` entry as an OpenAI-compatible one on Azure's URL shape:
    ``{api_base}/openai/deployments/<deployment>``, ``?api-version=``, the key in ``api-key``."""
    base = raw.get("api_base") or raw.get("base_url") or env.get("AZURE_API_BASE")
    if not isinstance(base, str) or not base:
        raise (where / "api_base").error(
            "azure/ deployments need api_base (https://<resource>.openai.azure.com)"
        )
    version = raw.get("api_version") or env.get("AZURE_API_VERSION") or AZURE_API_VERSION
    out = {k: v for k, v in raw.items() if k not in ("base_url", "api_version")}
    options = dict(out.get("options") or {})
    options["query"] = {**(options.get("query") or {}), "api-version": str(version)}
    options.setdefault("auth_header", "api-key")
    out.update(
        provider="openai",
        model=deployment,
        options=options,
        api_base=f"{base.rstrip('/')}/openai/deployments/{deployment}",
    )
    if out.get("api_key") is None and env.get("AZURE_API_KEY"):
        out["api_key"] = env["AZURE_API_KEY"]
    return out
