"""The ``pool`` config section.

pool:
  redis_url: redis://127.0.0.1:6379/0   # the shared state: workers, tokens, task streams (required)
  heartbeat: 1.0      # seconds between a worker's heartbeats
  grace: 0.5          # a worker silent for heartbeat + grace is gone; its tasks move (keep grace < 1)
  lease_wait: 20      # the longest a worker's lease call waits for work (long poll), seconds
  prefix: thrifty:pool  # Redis key prefix: one pool per prefix
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config, read_positive, reject_unknown


@dataclass(frozen=True)
class PoolSettings:
    redis_url: str
    heartbeat: float = 1.0
    grace: float = 0.5
    lease_wait: float = 20.0
    prefix: str = "thrifty:pool"

    @property
    def silence(self) -> float:
        """Seconds without a word after which a worker counts as gone."""
        return self.heartbeat + self.grace

    @property
    def sweep(self) -> float:
        """Seconds between two looks for silent workers (and registry refreshes)."""
        return min(0.25, self.heartbeat / 4)


def uses_pool(config: Config) -> bool:
    """True when a model group has a ``provider: pool`` deployment."""
    return any(d.provider == "pool" for g in config.models for d in g.deployments)


def parse_pool(config: Config) -> PoolSettings | None:
    """The settings, or None when no group uses the pool and no ``pool`` section is given."""
    raw = config.sections.get("pool")
    where = config.where("pool")
    if raw is None:
        if uses_pool(config):
            raise where.error("a model group has provider 'pool': add a pool section with redis_url")
        return None
    if not isinstance(raw, dict):
        raise where.error("must be a mapping")
    reject_unknown(raw, {"redis_url", "heartbeat", "grace", "lease_wait", "prefix"}, where)
    url = raw.get("redis_url")
    if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
        raise (where / "redis_url").error(f"must be a redis:// URL, got {url!r}")
    prefix = raw.get("prefix", "thrifty:pool")
    if not isinstance(prefix, str) or not prefix:
        raise (where / "prefix").error("must be a non-empty string")
    grace = read_positive(raw, "grace", where, 0.5)
    if grace >= 1:
        raise (where / "grace").error(
            f"must be below 1 second (tasks move within heartbeat + 1 s), got {grace}"
        )
    return PoolSettings(
        redis_url=url,
        heartbeat=read_positive(raw, "heartbeat", where, 1.0),
        grace=grace,
        lease_wait=read_positive(raw, "lease_wait", where, 20.0),
        prefix=prefix,
    )
