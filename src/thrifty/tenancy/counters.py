"""Shared counters for rate limits, budget reservations and requests in flight.

A request is admitted against several counters at once (its key, its team, its
model group): either every check fits and every counter moves, or none moves
and the caller learns which check failed and when to retry. In Redis this is
one Lua script, so replicas on several machines share one limit; without Redis
(or while it is down) the same rules run on per-process counters.

Kinds of check:
- ``rate``: a sliding window over ``window`` seconds (two fixed buckets, the
  previous one weighted by how much of it still overlaps the window);
- ``budget``: a running total for one budget period, created from ``seed``
  (the spend the database already holds) the first time it is seen;
- ``parallel``: requests in flight, each remembered until it is released or
  ``window`` seconds pass (a crashed replica cannot hold a slot forever).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

log = logging.getLogger("thrifty.tenancy")
PREFIX = "thrifty:lim:"
SETTLE_EVERY = 0.05  # seconds a settlement may wait to share a Redis round trip


class Check(NamedTuple):
    kind: str  # "rate" | "budget" | "parallel"
    name: str  # what is limited, e.g. "rpm:key:key_ab12"; shown in errors
    limit: float
    cost: float
    window: float  # rate: the window; budget: seconds to the period's end; parallel: max hold
    seed: float = 0.0  # budget: spend already recorded for this period


class Verdict(NamedTuple):
    admitted: bool
    failed: Check | None = None
    retry_after: float = 0.0
    remaining: tuple[float, ...] = ()  # per check, after this request


def _bucket_keys(check: Check, now: float) -> tuple[str, str]:
    if check.kind == "rate":
        index = int(now // check.window)
        return f"{PREFIX}{check.name}:{index}", f"{PREFIX}{check.name}:{index - 1}"
    return PREFIX + check.name, PREFIX + check.name


def _rate_retry(prev: float, used: float, cost: float, limit: float, window: float, elapsed: float) -> float:
    """Seconds until the sliding estimate leaves room for ``cost`` (an upper bound)."""
    excess = used + cost - limit
    left = window - elapsed
    if prev > 0 and excess <= prev * left / window:
        return excess * window / prev
    return left


class LocalCounters:
    """The rules of :class:`RedisCounters` on one process's memory."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.values: dict[str, float] = {}
        self.expiry: dict[str, float] = {}  # rate buckets: when they stop mattering
        self.holders: dict[str, dict[str, float]] = {}

    def _used(self, check: Check, now: float, current: str, previous: str) -> tuple[float, float]:
        if check.kind == "rate":
            prev = self.values.get(previous, 0.0)
            elapsed = now - (now // check.window) * check.window
            return prev * (1 - elapsed / check.window) + self.values.get(current, 0.0), prev
        if check.kind == "budget":
            return self.values.setdefault(current, check.seed), 0.0
        holders = self.holders.setdefault(current, {})
        for rid in [r for r, t in holders.items() if t < now - check.window]:
            del holders[rid]
        return float(len(holders)), 0.0

    async def admit(self, checks: Sequence[Check], request_id: str) -> Verdict:
        now = self.clock()
        remaining = []
        keys = [_bucket_keys(check, now) for check in checks]
        for check, (current, previous) in zip(checks, keys, strict=True):
            used, prev = self._used(check, now, current, previous)
            if used + check.cost > check.limit:
                elapsed = now - (now // check.window) * check.window if check.kind == "rate" else 0.0
                retry = (
                    _rate_retry(prev, used, check.cost, check.limit, check.window, elapsed)
                    if check.kind == "rate"
                    else (1.0 if check.kind == "parallel" else check.window)
                )
                return Verdict(False, check, retry)
            remaining.append(check.limit - used - check.cost)
        for check, (key, _) in zip(checks, keys, strict=True):
            if check.kind == "parallel":
                self.holders.setdefault(key, {})[request_id] = now
            else:
                self.values[key] = self.values.get(key, 0.0) + check.cost
                if check.kind == "rate":
                    self.expiry[key] = now + 2 * check.window
        if len(self.expiry) > 10_000:
            self._trim(now)
        return Verdict(True, remaining=tuple(remaining))

    def settle(self, checks: Sequence[tuple[Check, float]], request_id: str, admitted_at: float) -> None:
        """Correct each check by ``delta`` (actual minus reserved) and release parallel slots."""
        for check, delta in checks:
            key = _bucket_keys(check, admitted_at)[0]
            if check.kind == "parallel":
                self.holders.get(key, {}).pop(request_id, None)
            elif delta:
                self.values[key] = self.values.get(key, 0.0) + delta

    async def flush(self) -> None:
        """Settlements apply at once here; nothing waits."""

    def _trim(self, now: float) -> None:
        for key in [k for k, t in self.expiry.items() if t < now]:
            del self.expiry[key]
            self.values.pop(key, None)


_ADMIT = """
local now = tonumber(ARGV[1])
local rid = ARGV[2]
local n = (#ARGV - 2) / 5
local remaining = {}
for i = 1, n do
  local b = 2 + (i - 1) * 5
  local kind, limit, cost, win = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local k1, k2 = KEYS[2 * i - 1], KEYS[2 * i]
  local used, prev, elapsed = 0, 0, 0
  if kind == 'rate' then
    prev = tonumber(redis.call('GET', k2) or '0')
    elapsed = now - math.floor(now / win) * win
    used = prev * (1 - elapsed / win) + tonumber(redis.call('GET', k1) or '0')
  elseif kind == 'budget' then
    local v = redis.call('GET', k1)
    if not v then
      v = ARGV[b + 5]
      if win < 1e15 then redis.call('SET', k1, v, 'EX', math.ceil(win) + 86400) else redis.call('SET', k1, v) end
    end
    used = tonumber(v)
  else
    redis.call('ZREMRANGEBYSCORE', k1, '-inf', now - win)
    used = redis.call('ZCARD', k1)
  end
  if used + cost > limit then
    return {i, tostring(used), tostring(prev), tostring(elapsed)}
  end
  remaining[i] = tostring(limit - used - cost)
end
for i = 1, n do
  local b = 2 + (i - 1) * 5
  local kind, cost, win = ARGV[b + 1], ARGV[b + 3], tonumber(ARGV[b + 4])
  local k1 = KEYS[2 * i - 1]
  if kind == 'rate' then
    redis.call('INCRBYFLOAT', k1, cost)
    redis.call('EXPIRE', k1, math.ceil(win * 2) + 1)
  elseif kind == 'budget' then
    redis.call('INCRBYFLOAT', k1, cost)
  else
    redis.call('ZADD', k1, now, rid)
    redis.call('EXPIRE', k1, math.ceil(win) + 1)
  end
end
table.insert(remaining, 1, 0)
return remaining
"""


class RedisCounters:
    """Counters in Redis, shared by every replica; per-process counters while Redis is down."""

    def __init__(self, url: str, *, timeout: float = 1.0, clock: Callable[[], float] = time.time) -> None:
        self.url = url
        self.timeout = timeout
        self.clock = clock
        self.local = LocalCounters(clock)
        self.fallbacks = 0  # admissions decided locally because Redis failed
        self._down_until = 0.0
        self._client: Any = None
        self._script: Any = None
        # settlements wait here a moment and go to Redis together, off the request path
        self._deltas: dict[str, float] = {}
        self._releases: dict[str, list[str]] = {}
        self._flushing: asyncio.Task[None] | None = None

    def _redis(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis

            self._client = aioredis.Redis.from_url(
                self.url, socket_timeout=self.timeout * 4, socket_connect_timeout=self.timeout * 4
            )
            self._script = self._client.register_script(_ADMIT)
        return self._client

    @property
    def shared(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, what: str, exc: BaseException) -> None:
        self.fallbacks += 1
        if self.shared:
            log.warning(
                "tenancy: Redis %s failed (%s: %s); limits and budgets run on this process's counters "
                "(each replica enforces the full limit) until Redis answers again",
                what,
                type(exc).__name__,
                exc,
            )
        self._down_until = time.monotonic() + 5.0

    async def admit(self, checks: Sequence[Check], request_id: str) -> Verdict:
        if not checks:
            return Verdict(True)
        if not self.shared:
            self.fallbacks += 1
            return await self.local.admit(checks, request_id)
        from redis.exceptions import RedisError

        now = self.clock()
        keys: list[str] = []
        args: list[Any] = [repr(now), request_id]
        for check in checks:
            keys.extend(_bucket_keys(check, now))
            window = check.window if math.isfinite(check.window) else 1e18
            args += [check.kind, repr(check.limit), repr(check.cost), repr(window), repr(check.seed)]
        try:
            self._redis()
            async with asyncio.timeout(self.timeout):
                result = await self._script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("admission", exc)
            return await self.local.admit(checks, request_id)
        failed = int(result[0])
        if failed == 0:
            return Verdict(True, remaining=tuple(float(x) for x in result[1:]))
        check = checks[failed - 1]
        used, prev, elapsed = (float(x) for x in result[1:4])
        if check.kind == "rate":
            retry = _rate_retry(prev, used, check.cost, check.limit, check.window, elapsed)
        else:
            retry = 1.0 if check.kind == "parallel" else check.window
        return Verdict(False, check, retry)

    def settle(self, checks: Sequence[tuple[Check, float]], request_id: str, admitted_at: float) -> None:
        """Queue the corrections; one pipeline every ``SETTLE_EVERY`` seconds carries them all."""
        if not checks:
            return
        if not self.shared:
            self.local.settle(checks, request_id, admitted_at)
            return
        for check, delta in checks:
            key = _bucket_keys(check, admitted_at)[0]
            if check.kind == "parallel":
                self._releases.setdefault(key, []).append(request_id)
            elif delta:
                self._deltas[key] = self._deltas.get(key, 0.0) + delta
        if self._flushing is None:
            self._flushing = asyncio.ensure_future(self._flush_soon())

    async def _flush_soon(self) -> None:
        try:
            await asyncio.sleep(SETTLE_EVERY)
        finally:
            self._flushing = None
        await self.flush()

    async def flush(self) -> None:
        deltas, releases = self._deltas, self._releases
        self._deltas, self._releases = {}, {}
        if not deltas and not releases:
            return
        from redis.exceptions import RedisError

        try:
            pipe = self._redis().pipeline(transaction=False)
            for key, delta in deltas.items():
                pipe.incrbyfloat(key, delta)
            for key, ids in releases.items():
                pipe.zrem(key, *ids)
            async with asyncio.timeout(self.timeout):
                await pipe.execute()
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("settlement", exc)  # the reservations stay until their windows pass

    async def aclose(self) -> None:
        if self._flushing is not None:
            self._flushing.cancel()
            self._flushing = None
        if self._client is not None:
            await self.flush()
            await self._client.aclose()
            self._client = None
