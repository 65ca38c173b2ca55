"""The aiohttp transport: one pooled ``ClientSession`` per event loop, made on first use."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING

from ..errors import UpstreamConnectionError, UpstreamError
from .base import HttpRequest, HttpResponse, SharedTransport, StreamResponse, Timeouts

if TYPE_CHECKING:
    import aiohttp


def translate(exc: Exception) -> Exception:
    """aiohttp's connection errors as UpstreamConnectionError, its other errors as
    UpstreamError; anything else unchanged."""
    import aiohttp

    connection = (
        aiohttp.ClientConnectorError,
        aiohttp.ServerDisconnectedError,
        aiohttp.ClientOSError,
        aiohttp.ClientPayloadError,
        aiohttp.ClientConnectionError,
    )
    if isinstance(exc, connection):
        return UpstreamConnectionError(f"upstream connection failed ({type(exc).__name__})")
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamError(f"upstream request failed ({type(exc).__name__})")
    return exc


class AiohttpTransport(SharedTransport):
    """aiohttp, one pooled session per event loop, made on first use."""

    def __init__(self, *, limit: int = 1000, limit_per_host: int = 0, ttl_dns_cache: int = 300) -> None:
        self.limit = limit
        self.limit_per_host = limit_per_host
        self.ttl_dns_cache = ttl_dns_cache
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            import aiohttp

            for old in [other for other in self._sessions if other.is_closed()]:
                del self._sessions[old]
            connector = aiohttp.TCPConnector(
                limit=self.limit, limit_per_host=self.limit_per_host, ttl_dns_cache=self.ttl_dns_cache
            )
            session = aiohttp.ClientSession(connector=connector)
            self._sessions[loop] = session
        return session

    @staticmethod
    def _timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
        import aiohttp

        # The total and first-byte deadlines are HttpClient's; aiohttp bounds the connect.
        return aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect)

    async def post(self, request: HttpRequest) -> HttpResponse:
        async with self._session().post(
            request.url,
            data=request.body,
            headers=dict(request.headers),
            timeout=self._timeout(request.timeouts),
        ) as response:
            body = await response.read()
            return HttpResponse(response.status, response.headers, body)

    async def open_stream(self, request: HttpRequest) -> StreamResponse:
        response = await self._session().post(
            request.url,
            data=request.body,
            headers=dict(request.headers),
            timeout=self._timeout(request.timeouts),
        )
        return _AiohttpStream(response)

    async def _release(self) -> None:
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()


class _AiohttpStream:
    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status = response.status
        self.headers: Mapping[str, str] = response.headers

    async def read(self) -> bytes:
        return await self._response.read()

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        async for chunk in self._response.content.iter_any():
            yield chunk

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()  # abandoned mid-body: the connection cannot be reused
