"""Admission control: at most N requests in flight per group, a bounded queue behind them."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from ..errors import Overloaded


class AdmissionGate:
    """Past ``max_concurrency`` requests wait in a FIFO of at most ``max_queue``;
    past that, :class:`Overloaded` (429) with a Retry-After estimate."""

    def __init__(
        self,
        name: str,
        max_concurrency: int | None,
        max_queue: int | None,
        typical_latency: Callable[[], float],
    ) -> None:
        self.name = name
        self.max_concurrency = max_concurrency
        self.max_queue = max_queue
        self.typical_latency = typical_latency
        self.active = 0
        self.rejected = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return len(self._waiters)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    async def _acquire(self) -> None:
        limit = self.max_concurrency
        if limit is None or (self.active < limit and not self._waiters):
            self.active += 1
            return
        if self.max_queue is not None and len(self._waiters) >= self.max_queue:
            self.rejected += 1
            wait = self.typical_latency() * (len(self._waiters) + 1) / limit
            raise Overloaded(
                f"model group {self.name!r} is at capacity ({limit} in flight, {len(self._waiters)} queued)",
                retry_after=max(1.0, wait),
            )
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future  # the releasing request hands its slot over
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release()
            else:
                self._waiters.remove(future)
            raise

    def _release(self) -> None:
        limit = self.max_concurrency
        if limit is None or self.active <= limit:
            while self._waiters:
                future = self._waiters.popleft()
                if not future.done():
                    future.set_result(None)
                    return
        self.active -= 1

    def resize(self, max_concurrency: int | None) -> None:
        """A new limit (the group grew or shrank); waiters take the slots a larger one frees."""
        self.max_concurrency = max_concurrency
        while self._waiters and (max_concurrency is None or self.active < max_concurrency):
            future = self._waiters.popleft()
            if not future.done():
                self.active += 1
                future.set_result(None)
