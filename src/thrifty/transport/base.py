"""The seam between thrifty and the network: a request, an answer, and the interface.

A :class:`Transport` moves bytes: post a body and get the whole answer back,
or open a streaming post and read its body in chunks. It knows nothing about
LLMs or providers; :class:`thrifty.providers.http.HttpClient` sits on top.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from ..errors import ThriftyError, UpstreamConnectionError, UpstreamTimeout


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed to connect, for the whole exchange, and (streams) for the first byte."""

    connect: float = 10.0
    total: float = 600.0
    first_byte: float | None = None


@dataclass(frozen=True, slots=True)
class HttpRequest:
    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)  # credentials: never in a repr
    timeouts: Timeouts = field(default_factory=Timeouts)

    def json(self) -> Any:
        """The body decoded, for tests and mock handlers."""
        return orjson.loads(self.body)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


class StreamResponse(Protocol):
    """An open streaming response: status and headers known, body still arriving."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncGenerator[bytes, None]: ...

    async def aclose(self) -> None: ...


class Transport(Protocol):
    """Moves bytes to an upstream and back; knows nothing about LLMs."""

    async def post(self, request: HttpRequest) -> HttpResponse: ...

    async def open_stream(self, request: HttpRequest) -> StreamResponse: ...

    def open(self) -> None:
        """A backend starts using this transport."""

    async def aclose(self) -> None:
        """A backend stops using it; the last one out releases connections."""


class SharedTransport:
    """Counts the backends using a pooled transport; the last one out releases the pool."""

    _users = 0

    def open(self) -> None:
        self._users += 1

    async def aclose(self) -> None:
        self._users -= 1
        if self._users > 0:
            return
        self._users = 0
        await self._release()

    async def _release(self) -> None:
        """Close this event loop's pooled connections."""


def translate_error(exc: Exception) -> Exception:
    """A foreign exception raised while talking to an upstream, as a thrifty error, by type:

    TimeoutError (aiohttp's ServerTimeoutError too)  -> UpstreamTimeout
    ConnectionError (the raw transport's failures)   -> UpstreamConnectionError
    aiohttp's errors                                 -> see :func:`.aio.translate`
    anything else (a bug)                            -> itself
    """
    if isinstance(exc, ThriftyError):
        return exc
    if isinstance(exc, TimeoutError):
        return UpstreamTimeout("the upstream did not answer in time")
    if isinstance(exc, ConnectionError):
        return UpstreamConnectionError(f"upstream connection failed ({type(exc).__name__})")
    if "aiohttp" in sys.modules:  # no aiohttp error exists before aiohttp is imported
        from .aio import translate

        return translate(exc)
    return exc
