"""The ``tenancy`` config section, and building the service from config.

tenancy:
  database_url: postgresql://thrifty@db:5432/thrifty   # default: SQLite in server.data_dir
  redis_url: redis://127.0.0.1:6379/0                  # shared counters; default: per process
  cache_ttl: 0.4       # seconds a replica trusts its copy of a key (a revocation shows within 2x)
  soft_alert: 0.8      # log once when a budget is this much used
  lease_share: 0.01    # with Redis: share of a large limit a replica admits from without asking
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..config import Config, read_fraction, read_positive, reject_unknown

if TYPE_CHECKING:
    from .service import Tenancy

DEFAULT_OUTPUT_TOKENS = 4096


@dataclass(frozen=True)
class TenancySettings:
    database_url: str
    redis_url: str | None = None
    cache_ttl: float = 0.4
    soft_alert: float = 0.8
    lease_share: float = 0.01


def parse_tenancy(config: Config) -> TenancySettings:
    raw = config.sections.get("tenancy") or {}
    where = config.where("tenancy")
    if not isinstance(raw, dict):
        raise where.error("must be a mapping")
    reject_unknown(raw, {"database_url", "redis_url", "cache_ttl", "soft_alert", "lease_share"}, where)
    default_db = "sqlite:///" + os.path.join(config.server.data_dir, "tenancy.db")
    for key in ("database_url", "redis_url"):
        if raw.get(key) is not None and not isinstance(raw[key], str):
            raise (where / key).error("must be a string URL")
    soft = read_positive(raw, "soft_alert", where, 0.8)
    if soft > 1:
        raise (where / "soft_alert").error(f"must be a share between 0 and 1, got {soft!r}")
    return TenancySettings(
        database_url=raw.get("database_url") or default_db,
        redis_url=raw.get("redis_url"),
        cache_ttl=read_positive(raw, "cache_ttl", where, 0.4),
        soft_alert=soft,
        lease_share=read_fraction(raw, "lease_share", where, 0.01),
    )


def build_tenancy(config: Config) -> Tenancy:
    """The service for a gateway: worst-case prices per served model from the price table."""
    from ..prices import lookup
    from .counters import LocalCounters, RedisCounters
    from .service import Tenancy
    from .store import KeyStore

    settings = parse_tenancy(config)
    rates = [lookup(d) for g in config.models for d in g.deployments]
    by_group = {g.name: [lookup(d) for d in g.deployments] for g in config.models}
    windows = {g.name: max((d.context_window or 0) for d in g.deployments) for g in config.models}
    everything = (max((r.input for r in rates), default=0.0), max((r.output for r in rates), default=0.0))

    def max_price(model: str) -> tuple[float, float]:
        group = by_group.get(model)
        if group is None:  # a router or a fallback chain: it may reach any group
            return everything
        return max(r.input for r in group), max(r.output for r in group)

    def max_output(model: str) -> int:
        return min(windows.get(model) or DEFAULT_OUTPUT_TOKENS, DEFAULT_OUTPUT_TOKENS)

    counters = (
        RedisCounters(settings.redis_url, lease_share=settings.lease_share)
        if settings.redis_url
        else LocalCounters()
    )
    return Tenancy(
        KeyStore.open(settings.database_url),
        counters,
        max_price=max_price,
        max_output=max_output,
        cache_ttl=settings.cache_ttl,
        soft_alert=settings.soft_alert,
    )
