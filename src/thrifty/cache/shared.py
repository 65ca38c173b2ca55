"""L3: answers in Redis, shared by every gateway replica.

Redis is an optimisation, never a dependency of serving: each call has a
deadline, and the first failure (refused, reset, slow) marks Redis down for a
few seconds with one log line and a counter; meanwhile the cache runs on L1/L2.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .keys import every_tenant

log = logging.getLogger("thrifty.cache")
T = TypeVar("T")
PREFIX = "thrifty:cache:"
PURGE_CHANNEL = "thrifty:cache:purge"
RETRY_AFTER = 5.0


class RedisLevel:
    """A redis.asyncio client with deadlines and a down-for-a-while switch."""

    def __init__(self, url: str, timeout: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.timeout = timeout
        self.clock = clock
        self.failures = 0
        self.down = False
        self.down_until = 0.0
        self._client: Any = None

    @property
    def available(self) -> bool:
        return self.clock() >= self.down_until

    def _connection(self) -> Any:
        if self._client is None:
            import redis.asyncio as aioredis

            self._client = aioredis.Redis.from_url(
                self.url, socket_timeout=self.timeout * 4, socket_connect_timeout=self.timeout * 4
            )
        return self._client

    async def _call(self, what: str, make: Callable[[Any], Awaitable[T]], default: T, timeout: float) -> T:
        if not self.available:
            return default
        from redis.exceptions import RedisError

        try:
            result = await asyncio.wait_for(make(self._connection()), timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            self.failures += 1
            if not self.down:
                log.warning(
                    "cache: Redis %s failed (%s: %s); serving from L1/L2 until it answers again",
                    what,
                    type(exc).__name__,
                    exc,
                )
            self.down = True
            self.down_until = self.clock() + RETRY_AFTER
            return default
        if self.down:
            log.info("cache: Redis answers again")
            self.down = False
        return result

    @staticmethod
    def key(namespace: str, key: str) -> str:
        return f"{PREFIX}{namespace}:{key}"

    async def get(self, namespace: str, key: str) -> tuple[bytes, float] | None:
        async def read(client: Any) -> tuple[bytes, float] | None:
            async with client.pipeline(transaction=False) as pipe:
                pipe.get(self.key(namespace, key))
                pipe.pttl(self.key(namespace, key))
                value, pttl = await pipe.execute()
            if value is None or pttl is None or pttl <= 0:
                return None
            return bytes(value), time.time() + pttl / 1000

        return await self._call("read", read, None, self.timeout)

    async def put(self, namespace: str, key: str, value: bytes, ttl: float) -> None:
        async def write(client: Any) -> None:
            await client.set(self.key(namespace, key), value, px=max(1, int(ttl * 1000)))

        await self._call("write", write, None, self.timeout * 4)

    async def purge(self, namespace: str) -> set[str]:
        bare = every_tenant(namespace)
        if bare is None:
            patterns = [f"{PREFIX}{_glob(namespace)}:*"]
        else:  # the namespace in every tenant's space
            patterns = [f"{PREFIX}{_glob(bare)}:*", f"{PREFIX}*|{_glob(bare)}:*"]

        async def purge(client: Any) -> set[str]:
            removed: set[str] = set()
            for pattern in patterns:
                async for raw in client.scan_iter(match=pattern, count=500):
                    name = raw.decode() if isinstance(raw, bytes) else str(raw)
                    await client.unlink(name)
                    removed.add(name.rsplit(":", 1)[1])
            await client.publish(PURGE_CHANNEL, namespace)  # other replicas drop their L1/L2 copies
            return removed

        return await self._call("purge", purge, set(), max(5.0, self.timeout * 100))

    async def listen_for_purges(self, on_purge: Callable[[str], Awaitable[object]]) -> None:
        """Run until cancelled: call ``on_purge(namespace)`` when any replica purges."""
        from redis.exceptions import RedisError

        while True:
            try:
                pubsub = self._connection().pubsub()
                await pubsub.subscribe(PURGE_CHANNEL)
                try:
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            data = message["data"]
                            await on_purge(data.decode() if isinstance(data, bytes) else str(data))
                finally:
                    await pubsub.aclose()
            except (RedisError, OSError):
                await asyncio.sleep(RETRY_AFTER)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _glob(text: str) -> str:
    """``text`` matched literally in a Redis SCAN pattern."""
    return "".join("\\" + c if c in "\\*?[]" else c for c in text)
