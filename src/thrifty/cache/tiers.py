"""The levels together: read through L1 -> L2 -> L3, fill the faster ones on a hit.

Only L1 is touched on the caller's path when writing; L2 and L3 writes run as
background tasks (``flush()`` waits for them), so storing an answer never adds
disk or network time to a response.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from .disk import DiskLevel
from .memory import MemoryLevel
from .settings import StoreSettings
from .shared import RedisLevel

log = logging.getLogger("thrifty.cache")


@dataclass
class Counters:
    hits: dict[str, int] = field(default_factory=lambda: {"l1": 0, "l2": 0, "l3": 0})
    misses: int = 0
    writes: int = 0


class TieredStore:
    """Answers by key across memory, disk and Redis, each with its own TTL."""

    def __init__(self, settings: StoreSettings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.memory = MemoryLevel(settings.l1_bytes, clock)
        self.disk = DiskLevel(settings.l2_path, clock) if settings.l2_path else None
        self.redis = RedisLevel(settings.redis_url, settings.redis_timeout) if settings.redis_url else None
        self.counters = Counters()
        self._pending: set[asyncio.Task[Any]] = set()

    async def open(self) -> None:
        if self.disk is not None:
            try:
                await self.disk.open()
            except OSError as exc:
                log.warning("cache: cannot open %s (%s); running without L2", self.disk.path, exc)
                self.disk = None

    async def aclose(self) -> None:
        await self.flush()
        if self.disk is not None:
            await self.disk.aclose()
        if self.redis is not None:
            await self.redis.aclose()

    def background(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` off the caller's path; errors are logged, never raised."""
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("cache: background write failed: %r", task.exception())

    async def flush(self) -> None:
        """Wait for the background writes started so far."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    async def get(self, key: str, namespace: str, ttls: tuple[float, float, float]) -> bytes | None:
        entry = self.memory.get(key)
        if entry is not None:
            self.counters.hits["l1"] += 1
            return entry.value
        found = await self._lower(key, namespace, ttls)
        if found is None:
            self.counters.misses += 1
        return found

    async def _lower(self, key: str, namespace: str, ttls: tuple[float, float, float]) -> bytes | None:
        now = self.clock()
        if self.disk is not None:
            row = await self.disk.get(key)
            if row is not None:
                self.counters.hits["l2"] += 1
                self.memory.put(key, row[0], min(ttls[0], row[1] - now), namespace)
                return row[0]
        if self.redis is not None:
            row = await self.redis.get(namespace, key)
            if row is not None:
                self.counters.hits["l3"] += 1
                value, expires = row
                self.memory.put(key, value, min(ttls[0], expires - now), namespace)
                if self.disk is not None:
                    self.background(self.disk.put(key, namespace, value, now + min(ttls[1], expires - now)))
                return value
        return None

    def put(self, key: str, namespace: str, value: bytes, ttls: tuple[float, float, float]) -> None:
        """Store in L1 now and in L2/L3 in the background."""
        self.counters.writes += 1
        self.memory.put(key, value, ttls[0], namespace)
        if self.disk is not None:
            self.background(self.disk.put(key, namespace, value, self.clock() + ttls[1]))
        if self.redis is not None:
            self.background(self.redis.put(namespace, key, value, ttls[2]))

    async def purge(self, namespace: str) -> set[str]:
        """Drop every answer in ``namespace`` from every level; the keys that went."""
        keys = await self.purge_local(namespace)
        if self.redis is not None:
            keys |= await self.redis.purge(namespace)
        return keys

    async def purge_local(self, namespace: str) -> set[str]:
        """Drop ``namespace`` from this process's levels (memory and disk)."""
        await self.flush()
        keys = self.memory.purge(namespace)
        if self.disk is not None:
            keys |= await self.disk.purge(namespace)
        return keys

    def stats(self) -> dict[str, Any]:
        redis = self.redis
        return {
            "hits_l1": self.counters.hits["l1"],
            "hits_l2": self.counters.hits["l2"],
            "hits_l3": self.counters.hits["l3"],
            "misses": self.counters.misses,
            "writes": self.counters.writes,
            "l1_entries": len(self.memory),
            "l1_bytes": self.memory.bytes,
            "l2_errors": self.disk.errors if self.disk else 0,
            "redis_failures": redis.failures if redis else 0,
            "redis_up": bool(redis and not redis.down),
        }
