"""Typed configuration, loaded once from YAML and the environment.

Two shapes are accepted for models, and may be mixed:

thrifty's own::

    models:
      - name: fast
        deployments:
          - {provider: local, model: smollm2}
          - {provider: openai, model: gpt-4o-mini, api_key: os.environ/OPENAI_API_KEY}

LiteLLM's ``model_list`` (entries sharing a ``model_name`` form one group)::

    model_list:
      - model_name: fast
        litellm_params: {model: openai/gpt-4o-mini, api_key: os.environ/OPENAI_API_KEY, rpm: 600}

Capability sections (``cache``, ``routing``, ``balance``, ``alerts``, ...) are kept
raw in :attr:`Config.sections` and parsed by the capability that owns them, with
:class:`Where` naming file and key in every error message.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

log = logging.getLogger("thrifty.config")

# provider prefix -> (provider kind, default base URL, environment variable for the key)
KNOWN_PROVIDERS: dict[str, tuple[str, str | None, str | None]] = {
    "openai": ("openai", "https://api.openai.com/v1", "OPENAI_API_KEY"),
    "deepseek": ("openai", "https://api.deepseek.com/v1", "DEEPSEEK_API_KEY"),
    "xai": ("openai", "https://api.x.ai/v1", "XAI_API_KEY"),
    "mistral": ("openai", "https://api.mistral.ai/v1", "MISTRAL_API_KEY"),
    "groq": ("openai", "https://api.groq.com/openai/v1", "GROQ_API_KEY"),
    "together_ai": ("openai", "https://api.together.xyz/v1", "TOGETHER_API_KEY"),
    "openrouter": ("openai", "https://openrouter.ai/api/v1", "OPENROUTER_API_KEY"),
    "ollama": ("openai", "http://127.0.0.1:11434/v1", None),
    "ollama_chat": ("openai", "http://127.0.0.1:11434/v1", None),
    "hosted_vllm": ("openai", None, None),
    "vllm": ("openai", None, None),
    "llamacpp": ("openai", "http://127.0.0.1:8080/v1", None),
    "openai_compatible": ("openai", None, None),
    "anthropic": ("anthropic", "https://api.anthropic.com/v1", "ANTHROPIC_API_KEY"),
    "azure": ("openai", None, "AZURE_API_KEY"),  # Azure's URL shape: config_litellm.azure_deployment
    "local": ("local", None, None),
    "fake": ("fake", None, None),
    "pool": ("pool", None, None),  # the device pool (thrifty.pool): workers that joined the gateway
}

DEFAULT_LOCAL_MODEL = "smollm2"


@dataclass(frozen=True)
class Where:
    """A position in a config file, for error messages."""

    file: str
    key: str = ""

    def __truediv__(self, part: str | int) -> Where:
        if isinstance(part, int):
            return Where(self.file, f"{self.key}[{part}]")
        return Where(self.file, f"{self.key}.{part}" if self.key else part)

    def error(self, problem: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.key or '(top level)'}: {problem}", param=self.key)


@dataclass(frozen=True)
class Deployment:
    """One place a model can be called: a provider, a model id, credentials."""

    name: str
    provider: str
    model: str
    api_base: str | None = None
    api_key: str | None = None
    weight: float = 1.0
    rpm: int | None = None
    tpm: int | None = None
    timeout: float = 600.0
    connect_timeout: float = 10.0
    first_token_timeout: float | None = None
    max_concurrency: int | None = None
    context_window: int | None = None
    price_model: str | None = None  # name to look up in the price table
    order: int | None = None  # fallback order within a group: 1 first, then 2, ...
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelGroup:
    """A model name clients ask for, served by one or more deployments."""

    name: str
    deployments: tuple[Deployment, ...]
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CorsConfig:
    """``server.cors``: which browser origins may call the gateway from their pages."""

    origins: tuple[str, ...]  # "https://app.example.com", or "*" for any
    methods: tuple[str, ...] = ("GET", "POST", "DELETE", "OPTIONS")
    headers: tuple[str, ...] = ("*",)  # request headers a page may send ("*": any it asks for)
    max_age: int = 600  # seconds a browser may cache a preflight answer
    credentials: bool = False  # cookies; never with origins "*"


@dataclass(frozen=True)
class ServerConfig:
    """The front door: where to listen, who may call, and every bound on a client.

    ``api_keys`` are admin keys (every route, every tenant's objects);
    ``client_keys`` reach the model routes and only what they own (their
    files, batches, feedback and cache namespace). When neither is set the
    gateway is open and must listen on loopback.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    api_keys: tuple[str, ...] = ()
    client_keys: tuple[str, ...] = ()
    public_metrics: bool = False  # /metrics without a key, for scrapers
    max_body_bytes: int = 4 * 1024 * 1024  # every JSON route
    max_file_bytes: int = 200 * 1024 * 1024  # POST /v1/files, streamed to disk
    max_json_depth: int = 100  # nesting of arrays and objects in a body
    max_header_bytes: int = 64 * 1024  # request line + all headers (431 beyond)
    max_headers: int = 100  # header count (431 beyond)
    max_connections: int = 2048  # beyond: the longest-idle connections are closed first
    keepalive_timeout: float = 5.0  # an idle keep-alive connection is closed after this
    header_timeout: float = 10.0  # a request's headers must arrive within this (slowloris)
    max_embedding_inputs: int = 256  # inputs in one /v1/embeddings request
    max_embedding_tokens: int = 300_000  # rough tokens (4 chars each) in one embeddings request
    cpu_workers: int = 2  # threads for CPU-bound work (embeddings, tokenising), off the event loop
    request_timeout: float = 600.0  # one request, every retry and fallback included
    data_dir: str = ".thrifty"
    responses_ttl: float = 30 * 86400.0  # a stored /v1/responses answer is kept this many seconds
    cors: CorsConfig | None = None  # off unless configured

    @property
    def keys_required(self) -> bool:
        return bool(self.api_keys or self.client_keys)


@dataclass(frozen=True)
class Config:
    server: ServerConfig = field(default_factory=ServerConfig)
    models: tuple[ModelGroup, ...] = ()
    sections: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<defaults>"
    aliases: Mapping[str, tuple[str, bool]] = field(
        default_factory=dict
    )  # more names: alias -> (group, hidden)
    ignored: tuple[str, ...] = ()  # LiteLLM keys thrifty knows but does not act on

    def group(self, name: str) -> ModelGroup | None:
        for group in self.models:
            if group.name == name:
                return group
        return None

    def where(self, key: str = "") -> Where:
        return Where(self.source, key)


def default_config(**server: Any) -> Config:
    """No config file: the embedded SmolLM2 model, nothing else."""
    local = Deployment(name=f"local/{DEFAULT_LOCAL_MODEL}", provider="local", model=DEFAULT_LOCAL_MODEL)
    return Config(
        server=ServerConfig(**server),
        models=(ModelGroup(name=DEFAULT_LOCAL_MODEL, deployments=(local,)),),
    )


def load_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read a YAML file into a :class:`Config`; every problem names file and key."""
    import yaml  # deferred: only startup needs it

    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config file: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    return parse_config(data or {}, source=file, environ=environ)


def parse_config(data: Any, *, source: str = "<config>", environ: Mapping[str, str] | None = None) -> Config:
    from . import config_litellm as litellm

    env: Mapping[str, str] = os.environ if environ is None else environ
    top = Where(source)
    if not isinstance(data, dict):
        raise top.error("the config must be a mapping of sections")
    unknown = sorted(set(map(str, data)) - KNOWN_SECTIONS)
    if unknown:
        raise (top / unknown[0]).error(
            f"unknown section; expected one of {', '.join(sorted(KNOWN_SECTIONS))}"
        )
    env = litellm.environment(data, top, env)
    data = _resolve_secrets({k: v for k, v in data.items() if k != "environment_variables"}, top, env)
    carried = litellm.carry(data, top)

    server = _parse_server(data.get("server") or {}, top / "server")
    if carried.admin_keys:
        server = replace(server, api_keys=server.api_keys + tuple(carried.admin_keys))
    groups: dict[str, list[Deployment]] = {}
    group_options: dict[str, dict[str, Any]] = {}
    for i, raw in enumerate(_as_list(data.get("models"), top / "models")):
        where = top / "models" / i
        if not isinstance(raw, dict):
            raise where.error("each model must be a mapping with 'name' and 'deployments'")
        name = _req(raw, "name", where)
        deployments = _as_list(raw.get("deployments"), where / "deployments")
        if not deployments:
            raise (where / "deployments").error("a model needs at least one deployment")
        for j, dep in enumerate(deployments):
            groups.setdefault(name, []).append(_parse_deployment(dep, where / "deployments" / j, name, env))
        options = {k: v for k, v in raw.items() if k not in ("name", "deployments")}
        group_options.setdefault(name, {}).update(options)
    _model_list(data, top, env, groups, carried.ignored)

    sections: dict[str, Any] = {}
    _litellm_settings(data, top, group_options, sections)
    models = tuple(
        ModelGroup(
            name=name,
            deployments=_unique_names(deps),
            options=group_options.get(name, {}),
        )
        for name, deps in groups.items()
    )
    if not models:
        models = default_config().models
    litellm.check_aliases(carried.aliases, groups, top / "router_settings" / "model_group_alias")
    for key, value in data.items():
        if key == "server" or key == "models" or key in litellm.SECTIONS:
            continue
        if key == "balance" and isinstance(value, dict) and isinstance(sections.get("balance"), dict):
            value = {**sections["balance"], **value}  # thrifty's own section wins
        sections[key] = value
    if carried.ignored:
        log.warning(
            "%s: thrifty does not act on these LiteLLM settings: %s", source, ", ".join(carried.ignored)
        )
    config = Config(
        server=server,
        models=models,
        sections=sections,
        source=source,
        aliases=carried.aliases,
        ignored=tuple(carried.ignored),
    )
    from .pool.settings import parse_pool

    parse_pool(config)  # a `provider: pool` group needs the pool section: say so at load time
    return config


def _model_list(
    data: Mapping[str, Any],
    top: Where,
    env: Mapping[str, str],
    groups: dict[str, list[Deployment]],
    ignored: list[str],
) -> None:
    """LiteLLM's ``model_list``: entries sharing a ``model_name`` join one group."""
    from .config_litellm import deployment_params

    for i, raw in enumerate(_as_list(data.get("model_list"), top / "model_list")):
        where = top / "model_list" / i
        if not isinstance(raw, dict):
            raise where.error("each entry must be a mapping with 'model_name' and 'litellm_params'")
        name = _req(raw, "model_name", where)
        params = raw.get("litellm_params")
        if not isinstance(params, dict):
            raise (where / "litellm_params").error("must be a mapping with at least 'model'")
        merged = deployment_params(params, where / "litellm_params", env, ignored)
        info = raw.get("model_info")
        if isinstance(info, dict) and "max_input_tokens" in info:
            merged.setdefault("context_window", info["max_input_tokens"])
        groups.setdefault(name, []).append(_parse_deployment(merged, where / "litellm_params", name, env))


# Every top-level key a config may have: thrifty's own sections, and LiteLLM's. Another key
# stops startup naming it. A capability that reads a new section adds its name here.
KNOWN_SECTIONS = frozenset(
    {
        "server",
        "models",
        "balance",
        "cache",
        "routing",
        "agent",
        "alerts",
        "ledger",
        "telemetry",
        "tasks",
        "tenancy",
        "fallbacks",
        "replicas",
        "compress",
        "learn",
        "pool",
        "model_list",
        "litellm_settings",
        "general_settings",
        "router_settings",
        "environment_variables",
    }
)


# LiteLLM router_settings.routing_strategy -> thrifty balance strategy
_LITELLM_STRATEGIES = {
    "simple-shuffle": "weighted",
    "least-busy": "least_outstanding",
    "latency-based-routing": "p2c",
    "usage-based-routing": "least_outstanding",
    "usage-based-routing-v2": "least_outstanding",
}


def _litellm_settings(
    data: Mapping[str, Any],
    top: Where,
    group_options: dict[str, dict[str, Any]],
    sections: dict[str, Any],
) -> None:
    """Carry LiteLLM's router_settings / litellm_settings over to thrifty's terms."""
    balance: dict[str, Any] = {}
    for section in ("litellm_settings", "router_settings"):
        raw = data.get(section)
        if raw is None:
            continue
        where = top / section
        if not isinstance(raw, dict):
            raise where.error("must be a mapping")
        strategy = raw.get("routing_strategy")
        if strategy is not None:
            if strategy not in _LITELLM_STRATEGIES:
                raise (where / "routing_strategy").error(
                    f"unsupported strategy {strategy!r}; supported: {', '.join(_LITELLM_STRATEGIES)}"
                )
            balance["strategy"] = _LITELLM_STRATEGIES[strategy]
        if "num_retries" in raw:
            balance["retries"] = raw["num_retries"]
        if "timeout" in raw:
            balance["timeout"] = raw["timeout"]
        breaker = {
            k: raw[v] for k, v in (("failures", "allowed_fails"), ("cooldown", "cooldown_time")) if v in raw
        }
        if breaker:
            balance["breaker"] = breaker
        _litellm_fallbacks(raw, where, group_options)
    if balance:
        sections["balance"] = balance


def _litellm_fallbacks(
    raw: Mapping[str, Any], where: Where, group_options: dict[str, dict[str, Any]]
) -> None:
    """``fallbacks: [{gpt: [claude]}]`` becomes the ``gpt`` group's ``fallbacks`` option."""
    for key in ("fallbacks", "context_window_fallbacks"):
        entries = raw.get(key)
        if entries is None:
            continue
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise (where / key).error("must be a list of {model_name: [fallback, ...]} mappings")
        for entry in entries:
            for name, targets in entry.items():
                if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
                    raise (where / key / str(name)).error("must be a list of model names")
                group_options.setdefault(str(name), {}).setdefault(key, targets)


_SERVER_INTS = {
    "max_body_bytes",
    "max_file_bytes",
    "max_json_depth",
    "max_header_bytes",
    "max_headers",
    "max_connections",
    "max_embedding_inputs",
    "max_embedding_tokens",
    "cpu_workers",
}
_SERVER_SECONDS = {"request_timeout", "keepalive_timeout", "header_timeout", "responses_ttl"}
_SERVER_KEYS = (
    {"host", "port", "api_keys", "api_key", "public_metrics", "data_dir", "cors"}
    | _SERVER_INTS
    | _SERVER_SECONDS
)


def _parse_server(raw: Any, where: Where) -> ServerConfig:
    if not isinstance(raw, dict):
        raise where.error("must be a mapping")
    unknown = set(raw) - _SERVER_KEYS
    if unknown:
        raise (where / sorted(unknown)[0]).error(
            f"unknown setting; expected one of {', '.join(sorted(_SERVER_KEYS - {'api_key'}))}"
        )
    admin, client = _parse_keys(raw.get("api_keys", raw.get("api_key", [])), where / "api_keys")
    port = raw.get("port", 8000)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise (where / "port").error(f"must be an integer from 0 to 65535, got {port!r}")
    defaults = ServerConfig()
    numbers: dict[str, Any] = {}
    for key in _SERVER_INTS:
        numbers[key] = read_positive_int(raw, key, where, getattr(defaults, key))
    for key in _SERVER_SECONDS:
        numbers[key] = read_positive(raw, key, where, getattr(defaults, key))
    return ServerConfig(
        host=_str(raw, "host", where) or "127.0.0.1",
        port=port,
        api_keys=admin,
        client_keys=client,
        public_metrics=read_bool(raw, "public_metrics", where, False),
        data_dir=_str(raw, "data_dir", where) or ".thrifty",
        cors=None if raw.get("cors") is None else _parse_cors(raw["cors"], where / "cors"),
        **numbers,
    )


_ORIGIN = re.compile(r"^https?://[^/\s]+$")


def _parse_cors(raw: Any, where: Where) -> CorsConfig:
    if not isinstance(raw, dict):
        raise where.error("must be a mapping with at least 'origins'")
    reject_unknown(raw, {"origins", "methods", "headers", "max_age", "credentials"}, where)
    defaults = CorsConfig(origins=())

    def strings(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = raw.get(key, list(default))
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise (where / key).error("must be a non-empty list of strings")
        return tuple(value)

    origins = strings("origins", ())
    for i, origin in enumerate(origins):
        if origin != "*" and not _ORIGIN.match(origin.rstrip("/")):
            raise (where / "origins" / i).error(f"must be '*' or scheme://host[:port], got {origin!r}")
    credentials = read_bool(raw, "credentials", where, False)
    if credentials and "*" in origins:
        raise (where / "credentials").error("cannot be true when origins include '*'; list the origins")
    max_age = raw.get("max_age", defaults.max_age)
    if not isinstance(max_age, int) or isinstance(max_age, bool) or max_age < 0:
        raise (where / "max_age").error(f"must be an integer >= 0, got {max_age!r}")
    return CorsConfig(
        origins=tuple(o.rstrip("/") for o in origins),
        methods=tuple(m.upper() for m in strings("methods", defaults.methods)),
        headers=strings("headers", defaults.headers),
        max_age=max_age,
        credentials=credentials,
    )


def _parse_keys(keys: Any, where: Where) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``api_keys``: strings (admin keys) or ``{key: ..., role: admin|client}`` mappings."""
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, list):
        raise where.error("must be a list of keys")
    admin: list[str] = []
    client: list[str] = []
    for i, item in enumerate(keys):
        if isinstance(item, str) and item:
            admin.append(item)
            continue
        if not isinstance(item, dict):
            raise (where / i).error("must be a non-empty string or a mapping {key, role}")
        reject_unknown(item, {"key", "role"}, where / i)
        key, role = item.get("key"), item.get("role", "admin")
        if not isinstance(key, str) or not key:
            raise (where / i / "key").error("must be a non-empty string")
        if role not in ("admin", "client"):
            raise (where / i / "role").error(f"must be 'admin' or 'client', got {role!r}")
        (admin if role == "admin" else client).append(key)
    return tuple(admin), tuple(client)


_DEPLOYMENT_KEYS = {
    "provider",
    "model",
    "name",
    "api_base",
    "base_url",
    "api_key",
    "weight",
    "rpm",
    "tpm",
    "timeout",
    "connect_timeout",
    "first_token_timeout",
    "stream_timeout",
    "max_concurrency",
    "max_parallel_requests",
    "context_window",
    "price_model",
    "options",
    "order",
}


def _parse_deployment(raw: Any, where: Where, group: str, env: Mapping[str, str]) -> Deployment:
    if not isinstance(raw, dict):
        raise where.error("a deployment must be a mapping with at least 'model'")
    model = _req(raw, "model", where)
    provider = _str(raw, "provider", where)
    if provider is None:
        if "/" not in model:
            raise (where / "model").error(
                f"{model!r} names no provider: write 'provider/model', e.g. 'openai/{model}'"
            )
        provider, model = model.split("/", 1)
    if provider not in KNOWN_PROVIDERS:
        raise (where / "provider").error(
            f"unknown provider {provider!r}; known: {', '.join(sorted(KNOWN_PROVIDERS))}"
        )
    if provider == "azure":
        from .config_litellm import azure_deployment

        return _parse_deployment(azure_deployment(raw, model, where, env), where, group, env)
    kind, default_base, key_env = KNOWN_PROVIDERS[provider]
    api_base = _str(raw, "api_base", where) or _str(raw, "base_url", where) or default_base
    if provider in ("ollama", "ollama_chat") and api_base and not api_base.rstrip("/").endswith("/v1"):
        api_base = api_base.rstrip("/") + "/v1"  # LiteLLM's Ollama base is the server root
    if kind in ("openai", "anthropic") and not api_base:
        raise (where / "api_base").error(f"provider {provider!r} needs an api_base URL")
    api_key = _str(raw, "api_key", where)
    if api_key is None and key_env:
        api_key = env.get(key_env)
    options = raw.get("options") or {}
    if not isinstance(options, dict):
        raise (where / "options").error("must be a mapping")
    first_token = raw.get("first_token_timeout", raw.get("stream_timeout"))
    return Deployment(
        name=_str(raw, "name", where) or f"{group}/{provider}/{model}",
        provider=kind,
        model=model,
        api_base=api_base.rstrip("/") if api_base else None,
        api_key=api_key,
        weight=read_positive(raw, "weight", where, 1.0),
        rpm=_positive_int(raw, "rpm", where, None),
        tpm=_positive_int(raw, "tpm", where, None),
        timeout=read_positive(raw, "timeout", where, 600.0),
        connect_timeout=read_positive(raw, "connect_timeout", where, 10.0),
        first_token_timeout=None
        if first_token is None
        else check_positive(first_token, where / "first_token_timeout"),
        max_concurrency=_positive_int(
            raw, "max_concurrency", where, _positive_int(raw, "max_parallel_requests", where, None)
        ),
        context_window=_positive_int(raw, "context_window", where, None),
        price_model=_str(raw, "price_model", where),
        order=_positive_int(raw, "order", where, None),
        options=options,
    )


def _unique_names(deps: list[Deployment]) -> tuple[Deployment, ...]:
    seen: dict[str, int] = {}
    out = []
    for dep in deps:
        count = seen.get(dep.name, 0)
        seen[dep.name] = count + 1
        if count:
            dep = Deployment(**{**dep.__dict__, "name": f"{dep.name}#{count}"})
        out.append(dep)
    return tuple(out)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _resolve_secrets(value: Any, where: Where, env: Mapping[str, str]) -> Any:
    """Replace ``os.environ/VAR`` and ``${VAR}`` with the environment's values."""
    if isinstance(value, dict):
        return {k: _resolve_secrets(v, where / str(k), env) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_secrets(v, where / i, env) for i, v in enumerate(value)]
    if isinstance(value, str):
        if value.startswith("os.environ/"):
            var = value.removeprefix("os.environ/")
            if var not in env:
                raise where.error(f"environment variable {var} is not set")
            return env[var]

        def sub(match: re.Match[str]) -> str:
            var = match.group(1)
            if var not in env:
                raise where.error(f"environment variable {var} is not set")
            return env[var]

        return _ENV_REF.sub(sub, value)
    return value


def _as_list(value: Any, where: Where) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise where.error("must be a list")
    return value


def _req(raw: Mapping[str, Any], key: str, where: Where) -> str:
    value = _str(raw, key, where, required=True)
    assert value is not None
    return value


def _str(raw: Mapping[str, Any], key: str, where: Where, *, required: bool = False) -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise (where / key).error("is required")
        return None
    if not isinstance(value, str) or (required and not value):
        raise (where / key).error(f"must be a non-empty string, got {value!r}")
    return value


# -- field readers, shared by every capability's settings parser ---------------
#
# ``check_*`` validate one value found at ``where``; ``read_*`` read ``raw[key]``
# (or ``default``) and check it. Every settings parser uses these, so one kind
# of value has one rule and one error message everywhere.


def reject_unknown(raw: Mapping[str, Any], known: set[str], where: Where) -> None:
    """Stop at the first key of ``raw`` that is not in ``known``, naming the keys allowed."""
    unknown = sorted(set(map(str, raw)) - known)
    if unknown:
        raise (where / unknown[0]).error(f"unknown setting; expected one of {', '.join(sorted(known))}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_bool(value: Any, where: Where) -> bool:
    if not isinstance(value, bool):
        raise where.error(f"must be true or false, got {value!r}")
    return value


def check_positive(value: Any, where: Where) -> float:
    if not _is_number(value) or value <= 0:
        raise where.error(f"must be a positive number, got {value!r}")
    return float(value)


def check_positive_int(value: Any, where: Where) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise where.error(f"must be a positive integer, got {value!r}")
    return value


def check_non_negative(value: Any, where: Where) -> float:
    if not _is_number(value) or value < 0:
        raise where.error(f"must be a number >= 0, got {value!r}")
    return float(value)


def check_count(value: Any, where: Where) -> int:
    """An integer >= 0 (retries, escalations)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise where.error(f"must be an integer >= 0, got {value!r}")
    return value


def check_fraction(value: Any, where: Where) -> float:
    if not _is_number(value) or not 0 <= value <= 1:
        raise where.error(f"must be a number in [0, 1], got {value!r}")
    return float(value)


def read_bool(raw: Mapping[str, Any], key: str, where: Where, default: bool) -> bool:
    return check_bool(raw.get(key, default), where / key)


def read_positive(raw: Mapping[str, Any], key: str, where: Where, default: float) -> float:
    return check_positive(raw.get(key, default), where / key)


def read_positive_int(raw: Mapping[str, Any], key: str, where: Where, default: int) -> int:
    return check_positive_int(raw.get(key, default), where / key)


def read_non_negative(raw: Mapping[str, Any], key: str, where: Where, default: float) -> float:
    return check_non_negative(raw.get(key, default), where / key)


def read_count(raw: Mapping[str, Any], key: str, where: Where, default: int) -> int:
    return check_count(raw.get(key, default), where / key)


def read_fraction(raw: Mapping[str, Any], key: str, where: Where, default: float) -> float:
    return check_fraction(raw.get(key, default), where / key)


def _positive_int(raw: Mapping[str, Any], key: str, where: Where, default: int | None) -> int | None:
    if raw.get(key, default) is None:
        return None
    return read_positive_int(raw, key, where, default or 0)


__all__ = [
    "Config",
    "CorsConfig",
    "check_bool",
    "check_count",
    "check_fraction",
    "check_non_negative",
    "check_positive",
    "check_positive_int",
    "read_bool",
    "read_count",
    "read_fraction",
    "read_non_negative",
    "read_positive",
    "read_positive_int",
    "reject_unknown",
    "Deployment",
    "ModelGroup",
    "ServerConfig",
    "Where",
    "default_config",
    "load_config",
    "parse_config",
]
