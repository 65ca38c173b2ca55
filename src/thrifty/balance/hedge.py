"""Hedged requests: when the first attempt is slow, race a second one and keep the winner."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import TypeVar

from ..types import Chunk

T = TypeVar("T")
Stream = AsyncGenerator[Chunk, None]


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


async def _first_chunk(stream: Stream) -> Chunk:
    return await anext(stream)


async def race_streams(primary: Stream, delay: float,
                       start_backup: Callable[[], Stream | None]) -> tuple[Stream, Chunk, bool]:
    """Wait ``delay`` for ``primary``'s first chunk; then also start a backup and race them.

    Returns the stream that produced a first chunk first, that chunk, and whether it was the
    backup. The loser is cancelled and closed, so it frees its deployment at once.
    """
    streams = [primary]
    tasks: list[asyncio.Future[Chunk]] = [asyncio.ensure_future(_first_chunk(primary))]
    try:
        done, _ = await asyncio.wait(tasks, timeout=delay)
        if not done:
            backup = start_backup()
            if backup is not None:
                streams.append(backup)
                tasks.append(asyncio.ensure_future(_first_chunk(backup)))
        chunk, index = await first_success(tasks)
    except BaseException:
        for stream in streams:
            await _close(stream)
        raise
    for i, stream in enumerate(streams):
        if i != index:
            await _close(stream)
    return streams[index], chunk, index > 0


async def _close(stream: Stream) -> None:
    with contextlib.suppress(Exception, asyncio.CancelledError):
        await stream.aclose()
