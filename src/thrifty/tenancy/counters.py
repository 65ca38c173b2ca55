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

Leases keep large limits off the network. When a replica goes to Redis for a
rate or budget check whose limit is large next to the request (one lease,
``lease_share`` of the limit, covers at least ``LEASE_MIN`` such requests), the
script also grants it that share, counted in Redis at once; the replica then
admits from the share in memory until it is used up, its rate bucket or budget
period ends, or ``lease_ttl`` passes, and gives back what is left. Every
admission is counted in Redis before it happens, so N replicas never admit more
than the limit (no overshoot); the price is that up to N x ``lease_share`` of a
limit may sit unused in other replicas' leases when a request is refused.
Small limits (60 rpm, a $0.01 budget) never lease: each request asks Redis.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

log = logging.getLogger("thrifty.tenancy")
PREFIX = "thrifty:lim:"
SETTLE_EVERY = 0.05  # seconds a settlement may wait to share a Redis round trip
LEASE_SHARE = 0.01  # share of a limit one replica may hold as a lease
LEASE_MIN = 4  # lease only when one lease covers at least this many requests like the current one
LEASE_TTL = 2.0  # seconds an unused lease is kept before it is given back


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


@dataclass(slots=True)
class Lease:
    """A share of one check's limit, already counted in Redis, that this replica admits from."""

    key: str  # the Redis key the share was counted in
    left: float  # what this replica may still admit without asking
    floor: float  # what Redis had left for everyone else when the share was granted
    until: float  # the share ends then: its rate bucket, its budget period or the ttl, first


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
local n = (#ARGV - 2) / 6
local remaining, granted = {}, {}
for i = 1, n do
  local b = 2 + (i - 1) * 6
  local kind, limit, cost, win = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local want = tonumber(ARGV[b + 6])
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
  if want > 0 and used + cost + want > limit then want = 0 end
  granted[i] = want
  remaining[i] = limit - used - cost - want
end
local out = {0}
for i = 1, n do
  local b = 2 + (i - 1) * 6
  local kind, cost, win = ARGV[b + 1], tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  local k1 = KEYS[2 * i - 1]
  if kind == 'rate' then
    redis.call('INCRBYFLOAT', k1, cost + granted[i])
    redis.call('EXPIRE', k1, math.ceil(win * 2) + 1)
  elseif kind == 'budget' then
    redis.call('INCRBYFLOAT', k1, cost + granted[i])
  else
    redis.call('ZADD', k1, now, rid)
    redis.call('EXPIRE', k1, math.ceil(win) + 1)
  end
  out[2 * i] = tostring(remaining[i])
  out[2 * i + 1] = tostring(granted[i])
end
return out
"""


class RedisCounters:
    """Counters in Redis, shared by every replica; per-process counters while Redis is down."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 1.0,
        lease_share: float = LEASE_SHARE,
        lease_ttl: float = LEASE_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.lease_share = lease_share  # 0: every request asks Redis
        self.lease_ttl = lease_ttl
        self.clock = clock
        self.local = LocalCounters(clock)
        self.fallbacks = 0  # admissions decided locally because Redis failed
        self.round_trips = 0  # admissions that asked Redis (the rest came from leases)
        self._down_until = 0.0
        self._client: Any = None
        self._script: Any = None
        self._leases: dict[str, Lease] = {}  # check name -> this replica's share of its limit
        self._sweeper: asyncio.Task[None] | None = None
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
        now = self.clock()
        held: list[Lease | None] = []
        for check in checks:
            lease = self._leases.get(check.name)
            fits = lease is not None and now < lease.until and lease.left >= check.cost
            held.append(lease if fits else None)
        for lease, check in zip(held, checks, strict=True):
            if lease is not None:
                lease.left -= check.cost
        asked = [check for lease, check in zip(held, checks, strict=True) if lease is None]
        verdict = await self._ask(asked, request_id, now) if asked else Verdict(True)
        if not verdict.admitted:  # give the shares back: nothing moves for a refused request
            for lease, check in zip(held, checks, strict=True):
                if lease is not None:
                    lease.left += check.cost
            return verdict
        answers = iter(verdict.remaining)
        remaining = [
            lease.floor + lease.left if lease is not None else next(answers, math.inf) for lease in held
        ]
        return Verdict(True, remaining=tuple(remaining))

    def _want(self, check: Check) -> float:
        """The share of ``check``'s limit to lease with this request, or 0 to ask every time."""
        if check.kind == "parallel":
            return 0.0
        share = check.limit * self.lease_share
        return share if share > 0 and share >= LEASE_MIN * check.cost else 0.0

    async def _ask(self, checks: Sequence[Check], request_id: str, now: float) -> Verdict:
        if not self.shared:
            self.fallbacks += 1
            return await self.local.admit(checks, request_id)
        from redis.exceptions import RedisError

        keys: list[str] = []
        args: list[Any] = [repr(now), request_id]
        wants = [self._want(check) for check in checks]
        for check, want in zip(checks, wants, strict=True):
            keys.extend(_bucket_keys(check, now))
            window = check.window if math.isfinite(check.window) else 1e18
            args += [
                check.kind,
                repr(check.limit),
                repr(check.cost),
                repr(window),
                repr(check.seed),
                repr(want),
            ]
        self.round_trips += 1
        try:
            self._redis()
            async with asyncio.timeout(self.timeout):
                result = await self._script(keys=keys, args=args)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed("admission", exc)
            return await self.local.admit(checks, request_id)
        failed = int(result[0])
        if failed == 0:
            remaining = []
            for i, check in enumerate(checks):
                left, granted = float(result[1 + 2 * i]), float(result[2 + 2 * i])
                if granted > 0:
                    left += self._grant(check, keys[2 * i], granted, left, now)
                remaining.append(left)
            return Verdict(True, remaining=tuple(remaining))
        check = checks[failed - 1]
        used, prev, elapsed = (float(x) for x in result[1:4])
        if check.kind == "rate":
            retry = _rate_retry(prev, used, check.cost, check.limit, check.window, elapsed)
        else:
            retry = 1.0 if check.kind == "parallel" else check.window
        return Verdict(False, check, retry)

    def _grant(self, check: Check, key: str, granted: float, floor: float, now: float) -> float:
        """Hold a share Redis just granted; returns what this replica now holds of ``check``."""
        # a rate lease ends with its bucket; a budget's key names its period, which ends in ``window`` s
        end = (now // check.window + 1) * check.window if check.kind == "rate" else now + check.window
        until = min(end, now + self.lease_ttl)
        lease = self._leases.get(check.name)
        if lease is not None and lease.key == key and now < lease.until:
            lease.left += granted
            lease.floor, lease.until = floor, until
        else:
            if lease is not None:
                self._give_back(check.name)
            lease = self._leases[check.name] = Lease(key, granted, floor, until)
        if self._sweeper is None:
            self._sweeper = asyncio.ensure_future(self._sweep())
        return lease.left

    def _give_back(self, name: str) -> None:
        """End a lease: what it has left is taken off the Redis counter with the next settlements."""
        lease = self._leases.pop(name)
        if lease.left:
            self._deltas[lease.key] = self._deltas.get(lease.key, 0.0) - lease.left

    async def _sweep(self) -> None:
        """Give back leases whose time is up, so idle replicas do not sit on shares."""
        try:
            while self._leases:
                await asyncio.sleep(self.lease_ttl / 2)
                now = self.clock()
                for name in [n for n, lease in self._leases.items() if now >= lease.until]:
                    self._give_back(name)
                await self.flush()
        finally:
            self._sweeper = None

    def settle(self, checks: Sequence[tuple[Check, float]], request_id: str, admitted_at: float) -> None:
        """Queue the corrections; one pipeline every ``SETTLE_EVERY`` seconds carries them all.

        A correction on a counter this replica holds a lease of moves the lease instead:
        a refund becomes more to admit locally (Redis already counts it), a charge is
        taken from the lease when it can cover it.
        """
        if not checks:
            return
        queued: list[tuple[Check, float]] = []
        for check, delta in checks:
            if not delta and check.kind != "parallel":
                continue
            lease = self._leases.get(check.name)
            if lease is not None and lease.key == _bucket_keys(check, admitted_at)[0] and lease.left >= delta:
                lease.left -= delta
            else:
                queued.append((check, delta))
        if not queued:
            return
        if not self.shared:
            self.local.settle(queued, request_id, admitted_at)
            return
        for check, delta in queued:
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
        for task in (self._flushing, self._sweeper):
            if task is not None:
                task.cancel()
        self._flushing = self._sweeper = None
        for name in list(self._leases):
            self._give_back(name)
        if self._client is not None:
            await self.flush()
            await self._client.aclose()
            self._client = None
