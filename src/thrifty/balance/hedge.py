"""Hedging as a strategy of the attempt loop: send once, or race a second attempt when slow.

An attempt is an awaitable that opens a call on one deployment and gives its
result (a whole answer, or a stream and its first chunk). :class:`Single`
hands it back to be awaited; :class:`Hedged` waits the group's delay for it, then also starts a backup on
another deployment and keeps whichever succeeds first, cancelling the other and
discarding its result if it had one (a stream is closed), so the loser frees
its deployment at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

T = TypeVar("T")


class Hedging(Protocol):
    wins: int  # results a backup attempt produced

    def run(
        self,
        attempt: Awaitable[T],
        stream: bool,
        backup: Callable[[], Awaitable[T] | None],
        discard: Callable[[T], Awaitable[None]],
    ) -> Awaitable[T]:
        """The first successful result (of ``attempt``, or of a backup when hedged)."""
        ...


class Single:
    """No hedging: the one attempt, awaited as it is (no extra step on the hot path)."""

    wins = 0

    def run(
        self,
        attempt: Awaitable[T],
        stream: bool,
        backup: Callable[[], Awaitable[T] | None],
        discard: Callable[[T], Awaitable[None]],
    ) -> Awaitable[T]:
        return attempt


class Hedged:
    """After ``delay(stream)`` without a result, race a backup attempt on another deployment."""

    def __init__(self, delay: Callable[[bool], float]) -> None:
        self.delay = delay
        self.wins = 0

    async def run(
        self,
        attempt: Awaitable[T],
        stream: bool,
        backup: Callable[[], Awaitable[T] | None],
        discard: Callable[[T], Awaitable[None]],
    ) -> T:
        tasks: list[asyncio.Future[T]] = [asyncio.ensure_future(attempt)]
        index = -1
        try:
            done, _ = await asyncio.wait(tasks, timeout=self.delay(stream))
            if not done:
                second = backup()
                if second is not None:
                    tasks.append(asyncio.ensure_future(second))
            result, index = await first_success(tasks)
            self.wins += index > 0
            return result
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for i, task in enumerate(tasks):  # a loser that also succeeded: release what it opened
                if i != index and not task.cancelled() and task.exception() is None:
                    await discard(task.result())


async def first_success(tasks: list[asyncio.Future[T]]) -> tuple[T, int]:
    """The first result of ``tasks`` that is not an error, and its index; cancels the rest.

    Raises the last error when every task fails.
    """
    pending = set(tasks)
    error: BaseException | None = None
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                exc = task.exception()
                if exc is None:
                    return task.result(), tasks.index(task)
                error = exc
    finally:
        for task in tasks:
            task.cancel()
        # Let the losers run their cleanup (free the deployment) before going on.
        await asyncio.gather(*tasks, return_exceptions=True)
    assert error is not None
    raise error
