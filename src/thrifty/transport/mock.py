"""A transport that answers from a function, for tests and fault injection."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from .base import HttpRequest, HttpResponse, StreamResponse


@dataclass
class MockResponse:
    """What a :class:`MockTransport` handler answers.

    ``json`` or ``body`` give the whole body; ``chunks`` streams it piece by
    piece, and an exception among the chunks is raised at that point, to play
    a connection that breaks mid-stream.
    """

    status: int = 200
    json: Any = None
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    chunks: Iterable[bytes | Exception] | None = None

    def content(self) -> bytes:
        if self.json is not None:
            return orjson.dumps(self.json)
        if self.body or self.chunks is None:
            return self.body
        return b"".join(c for c in self.chunks if isinstance(c, bytes))


Handler = Callable[[HttpRequest], "MockResponse | Awaitable[MockResponse]"]


class MockTransport:
    """A transport that answers from ``handler(request)``; records every request.

    The handler may be sync or async, and may raise (``TimeoutError``,
    ``ConnectionResetError``, aiohttp errors) to play a failing upstream.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[HttpRequest] = []
        self.users = 0

    async def _answer(self, request: HttpRequest) -> MockResponse:
        self.requests.append(request)
        outcome = self.handler(request)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        return outcome

    async def post(self, request: HttpRequest) -> HttpResponse:
        answer = await self._answer(request)
        return HttpResponse(answer.status, answer.headers, answer.content())

    async def open_stream(self, request: HttpRequest) -> StreamResponse:
        return _MockStream(await self._answer(request))

    def open(self) -> None:
        self.users += 1

    async def aclose(self) -> None:
        self.users -= 1


class _MockStream:
    def __init__(self, answer: MockResponse) -> None:
        self._answer = answer
        self.status = answer.status
        self.headers = answer.headers
        self.closed = False

    async def read(self) -> bytes:
        return self._answer.content()

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        pieces: Iterable[bytes | Exception] = self._answer.chunks or [self._answer.content()]
        for piece in pieces:
            if isinstance(piece, Exception):
                raise piece
            await asyncio.sleep(0)
            yield piece

    async def aclose(self) -> None:
        self.closed = True
