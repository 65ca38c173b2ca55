"""The ``cache:`` config section and a model group's ``cache:`` option, parsed and checked.

cache:
  l1_bytes: 67108864            # in-process LRU budget
  l2_path: .thrifty/cache.sqlite3   # default under server.data_dir; false turns L2 off
  redis_url: redis://127.0.0.1:6379/0   # optional shared L3
  redis_timeout: 0.05           # seconds per Redis call before degrading to L1/L2
  ttls: {l1: 300, l2: 86400, l3: 3600}  # or ttl: 3600 for every level
  semantic: false               # opt in here, per model group, or per request
  threshold: 0.85               # cosine similarity a semantic match must reach
  verify: true                  # reject near-misses that change meaning
  pair_model: pairs.npz         # a fitted pair scorer (thrifty cache fit) judges candidates instead
  cache_sampled: false          # cache answers sampled with temperature > 0
  unset_temperature: cache      # requests without temperature: cache (default) or skip
  max_error_rate: 0.01          # audit semantic hits and move thresholds to hold this (default off)
  audit_share: 0.05             # share of semantic hits audited against a fresh upstream answer
  min_threshold: 0.75           # the lowest the audited threshold may fall to
  hnsw_after: 20000             # entries per partition before switching to hnswlib
  warm: true                    # at start and after a purge, fill L1 from L2 and the ledger's frequent keys
  warm_days: 7                  # of ledger history behind "frequent"

models:
  - name: fast
    deployments: [...]
    cache: {semantic: true, threshold: 0.92, ttl: 600}   # or cache: false
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..config import Config, ModelGroup, Where, read_bool, read_positive, read_positive_int, reject_unknown
from .guard import GuardSettings

DEFAULT_THRESHOLD = 0.85
DEFAULT_TTLS = (300.0, 86400.0, 3600.0)
LEVELS = ("l1", "l2", "l3")

UNSET_TEMPERATURE = ("cache", "skip")
_POLICY_KEYS = ("unset_temperature", "max_error_rate", "audit_share", "min_threshold", "pair_model")
_SECTION_KEYS = {
    "enabled",
    "l1_bytes",
    "l2_path",
    "redis_url",
    "redis_timeout",
    "ttl",
    "ttls",
    "semantic",
    "threshold",
    "verify",
    "cache_sampled",
    "hnsw_after",
    "warm",
    "warm_days",
    *_POLICY_KEYS,
}
_GROUP_KEYS = {"enabled", "ttl", "ttls", "semantic", "threshold", "verify", "cache_sampled", *_POLICY_KEYS}


@dataclass(frozen=True)
class StoreSettings:
    """What the shared store needs: sizes, places, connections (one per config)."""

    l1_bytes: int = 64 * 1024 * 1024
    l2_path: str | None = None
    redis_url: str | None = None
    redis_timeout: float = 0.05
    hnsw_after: int = 20000
    warm: bool = True  # fill L1 from L2 (frequent keys first) at start and after a purge
    warm_days: float = 7.0  # ledger history that ranks keys by frequency
    warm_ttl: float = DEFAULT_TTLS[0]  # L1 lifetime of a warmed answer (the section's l1 TTL)
    ledger_path: str | None = None  # the observer's ledger, read (off the request path) to warm


@dataclass(frozen=True)
class CacheSettings:
    """How one model group caches."""

    enabled: bool = False
    ttls: tuple[float, float, float] = DEFAULT_TTLS
    semantic: bool = False
    threshold: float = DEFAULT_THRESHOLD
    verify: bool = True
    cache_sampled: bool = False
    unset_temperature: str = "cache"  # or "skip": treat a request without temperature as sampled
    guard: GuardSettings = GuardSettings()  # audits holding a maximum error rate (off by default)
    pair_model: str | None = None  # a fitted pair scorer's .npz: it judges semantic candidates
    store: StoreSettings = StoreSettings()


def parse_settings(config: Config, group: ModelGroup) -> CacheSettings:
    """The settings for ``group``: the section's defaults, then the group's own ``cache:``."""
    where = config.where("cache")
    section = config.sections.get("cache")
    if section is None:
        section = {}
        enabled = False
    elif section is False or section is True:
        enabled, section = bool(section), {}
    elif isinstance(section, Mapping):
        enabled = True
    else:
        raise where.error("must be a mapping of cache settings (or true/false)")
    reject_unknown(section, _SECTION_KEYS, where)
    settings = CacheSettings(
        enabled=read_bool(section, "enabled", where, enabled),
        store=_store(section, where, config),
    )
    settings = _overrides(settings, section, where)
    return _group_overrides(settings, group, config)


def _group_overrides(settings: CacheSettings, group: ModelGroup, config: Config) -> CacheSettings:
    raw = group.options.get("cache")
    if raw is None:
        return settings
    index = next((i for i, g in enumerate(config.models) if g.name == group.name), 0)
    where = config.where("models") / index / "cache"
    if isinstance(raw, bool):
        return replace(settings, enabled=raw)
    if not isinstance(raw, Mapping):
        raise where.error("must be true, false or a mapping of cache settings")
    reject_unknown(raw, _GROUP_KEYS, where)
    settings = replace(settings, enabled=read_bool(raw, "enabled", where, True))
    return _overrides(settings, raw, where)


def _overrides(settings: CacheSettings, raw: Mapping[str, Any], where: Where) -> CacheSettings:
    threshold = raw.get("threshold", settings.threshold)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise (where / "threshold").error(f"must be a number in (0, 1], got {threshold!r}")
    return replace(
        settings,
        ttls=_ttls(raw, where, settings.ttls),
        semantic=read_bool(raw, "semantic", where, settings.semantic),
        threshold=float(threshold),
        verify=read_bool(raw, "verify", where, settings.verify),
        cache_sampled=read_bool(raw, "cache_sampled", where, settings.cache_sampled),
        unset_temperature=_unset_temperature(raw, where, settings.unset_temperature),
        guard=_guard(raw, where, settings.guard),
        pair_model=_pair_model(raw, where, settings.pair_model),
    )


def _pair_model(raw: Mapping[str, Any], where: Where, default: str | None) -> str | None:
    value = raw.get("pair_model", default)
    if value is None or value is False:
        return None
    if not isinstance(value, str) or not value:
        raise (where / "pair_model").error(
            f"must be the path of a model from `thrifty cache fit`, got {value!r}"
        )
    return value


def _unset_temperature(raw: Mapping[str, Any], where: Where, default: str) -> str:
    value = raw.get("unset_temperature", default)
    if value not in UNSET_TEMPERATURE:
        raise (where / "unset_temperature").error(f"must be 'cache' or 'skip', got {value!r}")
    return str(value)


def _fraction(raw: Mapping[str, Any], key: str, where: Where, default: float | None) -> float | None:
    value = raw.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise (where / key).error(f"must be a number in (0, 1], got {value!r}")
    return float(value)


def _guard(raw: Mapping[str, Any], where: Where, default: GuardSettings) -> GuardSettings:
    share = _fraction(raw, "audit_share", where, default.audit_share)
    floor = _fraction(raw, "min_threshold", where, default.floor)
    return replace(
        default,
        max_error_rate=_fraction(raw, "max_error_rate", where, default.max_error_rate),
        audit_share=default.audit_share if share is None else share,
        floor=default.floor if floor is None else floor,
    )


def _store(section: Mapping[str, Any], where: Where, config: Config) -> StoreSettings:
    l2_path = section.get("l2_path", os.path.join(config.server.data_dir, "cache.sqlite3"))
    if l2_path is False or l2_path is None:
        l2_path = None
    elif not isinstance(l2_path, str) or not l2_path:
        raise (where / "l2_path").error(f"must be a file path or false, got {l2_path!r}")
    redis_url = section.get("redis_url")
    if redis_url is not None and (
        not isinstance(redis_url, str) or not redis_url.startswith(("redis://", "rediss://", "unix://"))
    ):
        raise (where / "redis_url").error(f"must be a redis:// URL, got {redis_url!r}")
    return StoreSettings(
        l1_bytes=read_positive_int(section, "l1_bytes", where, StoreSettings.l1_bytes),
        l2_path=l2_path,
        redis_url=redis_url,
        redis_timeout=read_positive(section, "redis_timeout", where, StoreSettings.redis_timeout),
        hnsw_after=read_positive_int(section, "hnsw_after", where, StoreSettings.hnsw_after),
        warm=read_bool(section, "warm", where, StoreSettings.warm),
        warm_days=read_positive(section, "warm_days", where, StoreSettings.warm_days),
        warm_ttl=_ttls(section, where, DEFAULT_TTLS)[0],
        ledger_path=_ledger_path(config),
    )


def _ledger_path(config: Config) -> str | None:
    from ..observe.settings import parse_ledger

    return parse_ledger(config).path


def _ttls(
    raw: Mapping[str, Any], where: Where, default: tuple[float, float, float]
) -> tuple[float, float, float]:
    ttls = list(default)
    if "ttl" in raw:
        ttls = [read_positive(raw, "ttl", where, 0.0)] * 3
    per_level = raw.get("ttls")
    if per_level is not None:
        if not isinstance(per_level, Mapping):
            raise (where / "ttls").error("must be a mapping like {l1: 300, l2: 86400, l3: 3600}")
        reject_unknown(per_level, set(LEVELS), where / "ttls")
        for i, level in enumerate(LEVELS):
            if level in per_level:
                ttls[i] = read_positive(per_level, level, where / "ttls", 0.0)
    return (ttls[0], ttls[1], ttls[2])
