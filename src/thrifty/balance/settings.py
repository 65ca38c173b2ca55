"""The ``balance:`` config section and per-group overrides, parsed and validated.

Every key of the section may also be set on a model group (next to ``name``
and ``deployments``) to override it for that group; ``fallbacks`` and
``context_window_fallbacks`` are group-only. Unknown keys in the section are
errors; a group's other keys belong to other capabilities and are ignored::

    balance:
      strategy: p2c              # round_robin | least_outstanding | p2c | weighted | affinity
      retries: 2
      backoff_base: 0.05         # seconds; full jitter up to base * 2**attempt, capped by backoff_max
      breaker: {failures: 5, failure_rate: 0.5, window: 30, min_requests: 20, cooldown: 10}
      timeout: 120               # per request, over all attempts (x-thrifty-timeout overrides)
    models:
      - name: local
        strategy: affinity
        affinity: {prefix_chars: 1024, balance_abs: 4, balance_rel: 1.5}
        max_concurrency: 8
        max_queue: 32
        hedge: true
        fallbacks: [cloud]
        context_window_fallbacks: [cloud-long]
        deployments: [...]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from ..config import (
    Config,
    ModelGroup,
    Where,
    check_bool,
    check_count,
    check_positive,
    check_positive_int,
    reject_unknown,
)
from ..retry import RetrySettings
from .breaker import BreakerSettings

STRATEGIES = ("round_robin", "least_outstanding", "p2c", "weighted", "affinity")


@dataclass(frozen=True)
class AffinitySettings:
    prefix_chars: int = 1024  # leading prompt characters hashed to pick the replica
    min_prefix_chars: int = 256  # shorter prompts are balanced by load instead
    balance_abs: int = 4  # leave the sticky replica when it has this many more in flight...
    balance_rel: float = 1.5  # ...and this many times the least loaded


@dataclass(frozen=True)
class BalanceSettings:
    strategy: str = "p2c"  # the benchmarks: best p99 when one replica slows down
    retry: RetrySettings = field(default_factory=RetrySettings)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    affinity: AffinitySettings = field(default_factory=AffinitySettings)
    timeout: float | None = None  # total seconds per request, over all attempts
    first_token_timeout: float | None = None  # default for deployments that set none
    hedge: bool = False
    hedge_quantile: float = 0.95
    hedge_min_samples: int = 20
    hedge_delay: float = 1.0  # used until the group has hedge_min_samples latencies
    max_concurrency: int | None = None  # per group; None = unbounded
    max_queue: int | None = None  # waiting requests per group past max_concurrency
    health_interval: float = 5.0
    health_timeout: float = 2.0
    health_check: bool | None = None  # None: only self-hosted (loopback/private) deployments
    fallbacks: tuple[str, ...] = ()
    context_window_fallbacks: tuple[str, ...] = ()


_RETRY_KEYS = {
    "retries",
    "backoff_base",
    "backoff_max",
    "budget_ratio",
    "budget_min_per_s",
    "max_retry_after",
}
_SCALAR_KEYS = {
    "strategy",
    "timeout",
    "first_token_timeout",
    "hedge",
    "hedge_quantile",
    "hedge_min_samples",
    "hedge_delay",
    "max_concurrency",
    "max_queue",
    "health_interval",
    "health_timeout",
    "health_check",
}
SECTION_KEYS = _RETRY_KEYS | _SCALAR_KEYS | {"breaker", "affinity"}
GROUP_ONLY_KEYS = {"fallbacks", "context_window_fallbacks"}


def parse_section(config: Config) -> BalanceSettings:
    """The defaults for every group, from ``config.sections['balance']``."""
    raw = config.sections.get("balance") or {}
    where = config.where("balance")
    if not isinstance(raw, Mapping):
        raise where.error("must be a mapping")
    reject_unknown(raw, SECTION_KEYS, where)
    return _apply(BalanceSettings(), raw, where)


def group_where(config: Config, group: ModelGroup) -> Where:
    return Where(config.source, f"models[name={group.name}]")


def parse_group(config: Config, group: ModelGroup, base: BalanceSettings | None = None) -> BalanceSettings:
    """The settings for one group: the section's defaults with the group's overrides."""
    settings = base if base is not None else parse_section(config)
    where = group_where(config, group)
    mine = {k: v for k, v in group.options.items() if k in SECTION_KEYS}
    settings = _apply(settings, mine, where)
    names = {g.name for g in config.models}
    changes: dict[str, Any] = {}
    for key in GROUP_ONLY_KEYS:
        if key in group.options:
            changes[key] = _group_list(group.options[key], where / key, names, group.name)
    return replace(settings, **changes)


def _apply(settings: BalanceSettings, raw: Mapping[str, Any], where: Where) -> BalanceSettings:
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SCALAR_KEYS:
            changes[key] = _scalar(key, value, where / key)
    retry = {k: _retry_value(k, raw[k], where / k) for k in _RETRY_KEYS if k in raw}
    if retry:
        changes["retry"] = replace(settings.retry, **retry)
    if "breaker" in raw:
        changes["breaker"] = _breaker(settings.breaker, raw["breaker"], where / "breaker")
    if "affinity" in raw:
        changes["affinity"] = _affinity(settings.affinity, raw["affinity"], where / "affinity")
    return replace(settings, **changes)


def _scalar(key: str, value: Any, where: Where) -> Any:
    if key == "strategy":
        if value not in STRATEGIES:
            raise where.error(f"must be one of {', '.join(STRATEGIES)}, got {value!r}")
        return value
    if key in ("hedge",):
        return check_bool(value, where)
    if key == "health_check":
        return None if value is None else check_bool(value, where)
    if key in ("max_concurrency", "max_queue", "hedge_min_samples"):
        if key == "max_queue" and value == 0:
            return 0
        return None if value is None and key != "hedge_min_samples" else check_positive_int(value, where)
    if key == "hedge_quantile":
        number = check_positive(value, where)
        if number >= 1:
            raise where.error(f"must be between 0 and 1, got {value!r}")
        return number
    if key in ("timeout", "first_token_timeout") and value is None:
        return None
    return check_positive(value, where)


def _retry_value(key: str, value: Any, where: Where) -> Any:
    if key == "retries":
        return check_count(value, where)
    if key == "budget_ratio" and value == 0:
        return 0.0
    return check_positive(value, where)


def _breaker(base: BreakerSettings, raw: Any, where: Where) -> BreakerSettings:
    if not isinstance(raw, Mapping):
        raise where.error("must be a mapping")
    known = {"failures", "failure_rate", "window", "min_requests", "cooldown"}
    reject_unknown(raw, known, where)
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("failures", "min_requests"):
            changes[key] = check_positive_int(value, where / key)
        else:
            changes[key] = check_positive(value, where / key)
    if changes.get("failure_rate", 0.5) > 1:
        raise (where / "failure_rate").error("must be a fraction between 0 and 1")
    return replace(base, **changes)


def _affinity(base: AffinitySettings, raw: Any, where: Where) -> AffinitySettings:
    if not isinstance(raw, Mapping):
        raise where.error("must be a mapping")
    known = {"prefix_chars", "min_prefix_chars", "balance_abs", "balance_rel"}
    reject_unknown(raw, known, where)
    changes: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "balance_rel":
            changes[key] = check_positive(value, where / key)
        else:
            changes[key] = check_positive_int(value, where / key)
    return replace(base, **changes)


def _group_list(value: Any, where: Where, names: set[str], own: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise where.error("must be a list of model group names")
    for name in value:
        if name not in names:
            raise where.error(f"names unknown model group {name!r}; known: {', '.join(sorted(names))}")
        if name == own:
            raise where.error("a group cannot fall back to itself")
    return tuple(value)
