"""One request's overall deadline: one timer for every retry, hedge, fallback and chunk.

``server.request_timeout`` bounds a whole request; a client may ask for less
with the ``timeout`` option (``x-thrifty-timeout`` header or the body's
``thrifty`` object), never for more. The gateway makes one :class:`Deadline`
per request and awaits the stack through :meth:`Deadline.run`.

A single ``loop.call_at`` timer serves the whole request, streams included.
It only cancels the task while that task is inside :meth:`run`, waiting on the
stack: a stream is an async generator, and a cancellation delivered while the
consumer (the server writing to the socket) holds control would land in the
wrong place. When the timer fires between two waits, the next wait raises at
once.

:class:`Timer` is the same mechanism without the request's error: the
balancer bounds a stream attempt (first token, then total) and the HTTP layer
an upstream body (first byte, then total) with one each, moved rather than
re-made, so no layer pays a timer per chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from .errors import InvalidRequest, RequestTimeout

T = TypeVar("T")


def requested_timeout(options: dict[str, Any]) -> float | None:
    """The client's ``timeout`` option in seconds (a number or a numeric header string)."""
    raw = options.get("timeout")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise InvalidRequest(f"'timeout' must be a number of seconds; got {raw!r}.", param="timeout")
    try:
        value = float(raw)
    except ValueError:
        raise InvalidRequest(
            f"'timeout' must be a number of seconds; got {raw!r}.", param="timeout"
        ) from None
    if not 0 < value < float("inf"):
        raise InvalidRequest(f"'timeout' must be a positive number of seconds; got {raw!r}.", param="timeout")
    return value


class Timer:
    """One loop timer for a whole request or stream, cancelling the task only inside :meth:`run`.

    A stream pays for its timer once, not once per chunk: :meth:`move` shifts
    the limit (a first-token limit becomes the total one) without a new object.
    When it fires, :meth:`run` raises :meth:`error` (``TimeoutError`` here).
    """

    __slots__ = ("at", "_loop", "_handle", "_task", "_cancelling", "_fired", "expired")

    def __init__(self, seconds: float) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self.at = loop.time() + seconds
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0
        self._fired: asyncio.Task[Any] | None = None
        self.expired = False
        self._handle = loop.call_at(self.at, self._fire)

    def error(self) -> Exception:
        return TimeoutError()

    def move(self, seconds: float) -> None:
        """Fire ``seconds`` from now instead (unless it already fired)."""
        if self.expired:
            return
        self._handle.cancel()
        self.at = self._loop.time() + seconds
        self._handle = self._loop.call_at(self.at, self._fire)

    def _fire(self) -> None:
        self.expired = True
        task = self._task
        if task is not None and not task.done():
            self._fired = task
            task.cancel()

    async def run(self, awaitable: Awaitable[T]) -> T:
        """``await awaitable``, cut short with :meth:`error` when the timer fires."""
        if self.expired:
            if asyncio.iscoroutine(awaitable):
                awaitable.close()
            raise self.error()
        task = asyncio.current_task()
        self._task = task
        self._cancelling = task.cancelling() if task is not None else 0
        try:
            result = await awaitable
        except asyncio.CancelledError:
            if task is not None and self._fired is task:
                self._fired = None
                if task.uncancel() <= self._cancelling:
                    raise self.error() from None
            raise
        finally:
            self._task = None
        if task is not None and self._fired is task:  # fired, but the awaitable swallowed it
            self._fired = None
            task.uncancel()
        return result

    def close(self) -> None:
        """Stop the timer (the request or stream is over)."""
        self._handle.cancel()


class Deadline(Timer):
    """The time by which one request must be answered; raises :class:`RequestTimeout` after it."""

    __slots__ = ("seconds", "source")

    def __init__(self, seconds: float, source: str) -> None:
        self.seconds = seconds
        self.source = source  # what set the limit, for the error message
        super().__init__(seconds)

    @classmethod
    def for_request(cls, server_limit: float, options: dict[str, Any]) -> Deadline:
        """The server's limit, or the client's shorter one."""
        asked = requested_timeout(options)
        if asked is not None and asked < server_limit:
            return cls(asked, "the request's timeout option")
        return cls(server_limit, "server.request_timeout")

    def error(self) -> RequestTimeout:
        return RequestTimeout(
            f"The request did not finish within {self.seconds:g} s ({self.source}), "
            "counting every retry, hedge and fallback.",
            param="timeout" if self.source != "server.request_timeout" else None,
        )
