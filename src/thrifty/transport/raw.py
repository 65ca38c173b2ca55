"""A lean HTTP/1.1 transport on asyncio and httptools, without aiohttp's client.

:class:`RawTransport` implements :class:`~thrifty.transport.base.Transport`
with one :class:`asyncio.Protocol` per connection and httptools' response
parser (Content-Length, chunked and close-delimited bodies). Connections are
kept alive in a pool per event loop and (scheme, host, port), reused last in
first out. A pooled connection that fails before any byte of the answer is
retried once on a fresh one; a connection that dies later raises
``ConnectionResetError``. No proxies, no HTTP/2, no compression, no cap on
the number of open connections.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import AsyncGenerator, Mapping
from typing import NamedTuple, cast
from urllib.parse import urlsplit

import httptools
from multidict import CIMultiDict

from .base import HttpRequest, HttpResponse, SharedTransport, StreamResponse

HIGH_WATER = 256 * 1024  # buffered body bytes that pause reading from the socket
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})

Key = tuple[str, str, int]


class _Target(NamedTuple):
    key: Key
    path: str
    host: str  # the Host header


@functools.lru_cache(maxsize=1024)
def _target(url: str) -> _Target:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"cannot post to {url!r}: need an http or https URL with a host")
    default = 443 if scheme == "https" else 80
    port = parts.port or default
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return _Target((scheme, parts.hostname, port), path, host if port == default else f"{host}:{port}")


def _head(target: _Target, request: HttpRequest) -> bytes:
    lines = [f"POST {target.path} HTTP/1.1", f"Host: {target.host}", f"Content-Length: {len(request.body)}"]
    lines += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() not in _OWN_HEADERS]
    if any("\r" in line or "\n" in line for line in lines):
        raise ValueError("HTTP header names and values must not contain line breaks")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


class _Connection(asyncio.Protocol):
    """One keep-alive connection serving one exchange at a time."""

    def __init__(self, key: Key) -> None:
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.begin()

    def begin(self) -> None:
        """Forget the previous exchange."""
        self.status = 0
        self.headers: CIMultiDict[str] = CIMultiDict()
        self.headers_done = self.done = self.got_byte = self._paused = False
        self.idle = False  # True while pooled, between exchanges
        self.keep_alive = True
        self._body: list[bytes] = []
        self._buffered = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        if self.idle:  # an idle connection has nothing to hear (a 408, say): drop it
            self.close()
            return
        self.got_byte = True
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            if not self.done:  # else: bytes after the answer, which only make the connection unusable
                self._fail(ConnectionResetError(f"unreadable HTTP response ({exc!r})"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.headers_done and not self.done and self._close_delimited():
            self.done = True  # the body ran until the server closed
        elif not self.done:
            self._fail(ConnectionResetError("the upstream closed the connection mid-response"))
        self._wake()

    # httptools callbacks
    def on_message_begin(self) -> None:
        if self.done:
            raise ValueError("a second answer to one request")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        self.headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._body.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        self.done = True
        self._wake()

    # the exchange
    def _close_delimited(self) -> bool:
        return "content-length" not in self.headers and "chunked" not in self.headers.get(
            "transfer-encoding", ""
        )

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def wait_headers(self) -> None:
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            await self._wait()

    async def next_chunk(self) -> bytes | None:
        """The body bytes buffered so far (waiting for some), or None at the end."""
        while not self._body:
            if self.done:
                return None
            if self.error is not None:
                raise self.error
            await self._wait()
        chunk = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        self._body.clear()
        self._buffered = 0
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()
        return chunk

    async def read_all(self) -> bytes:
        pieces = []
        while (chunk := await self.next_chunk()) is not None:
            pieces.append(chunk)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def drained(self) -> bool:
        return self.done and not self._body

    def reusable(self) -> bool:
        return self.done and self.keep_alive and not self.closed and self.error is None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class RawTransport(SharedTransport):
    """HTTP/1.1 on asyncio directly: keep-alive pools per event loop and host."""

    def __init__(self, *, max_idle_per_host: int = 256, ssl_context: ssl.SSLContext | None = None) -> None:
        self.max_idle_per_host = max_idle_per_host
        self._pools: dict[asyncio.AbstractEventLoop, dict[Key, list[_Connection]]] = {}
        self._ssl = ssl_context  # default: ssl.create_default_context(), made on first use

    def _pool(self, key: Key) -> list[_Connection]:
        loop = asyncio.get_running_loop()
        pools = self._pools.get(loop)
        if pools is None:
            for old in [other for other in self._pools if other.is_closed()]:
                del self._pools[old]
            pools = self._pools[loop] = {}
        return pools.setdefault(key, [])

    async def _connect(self, key: Key, connect_timeout: float) -> _Connection:
        scheme, host, port = key
        context = None
        if scheme == "https":
            context = self._ssl = self._ssl or ssl.create_default_context()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(connect_timeout):
            _, conn = await loop.create_connection(
                lambda: _Connection(key), host, port, ssl=context, server_hostname=host if context else None
            )
        return conn

    async def _exchange(self, request: HttpRequest) -> _Connection:
        """A connection on which the answer's status and headers have arrived."""
        target = _target(request.url)
        pool = self._pool(target.key)
        payload = _head(target, request) + request.body
        for attempt in (1, 2):
            conn = _idle(pool) if attempt == 1 else None
            reused = conn is not None
            if conn is None:
                conn = await self._connect(target.key, request.timeouts.connect)
            conn.begin()
            assert conn.transport is not None
            conn.transport.write(payload)
            try:
                await conn.wait_headers()
                return conn
            except ConnectionError:
                conn.close()
                if not reused or conn.got_byte:
                    raise
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable: the retry on a fresh connection returns or raises")

    def release(self, conn: _Connection) -> None:
        """Back to the pool if the exchange finished cleanly and the server keeps it open."""
        pool = self._pool(conn.key) if conn.reusable() else None
        if pool is not None and len(pool) < self.max_idle_per_host:
            conn.idle = True
            pool.append(conn)
        else:
            conn.close()

    async def post(self, request: HttpRequest) -> HttpResponse:
        conn = await self._exchange(request)
        try:
            body = await conn.read_all()
        except BaseException:
            conn.close()
            raise
        response = HttpResponse(conn.status, conn.headers, body)
        self.release(conn)
        return response

    async def open_stream(self, request: HttpRequest) -> StreamResponse:
        conn = await self._exchange(request)
        return _RawStream(self, conn)

    async def _release(self) -> None:
        for pool in self._pools.pop(asyncio.get_running_loop(), {}).values():
            for conn in pool:
                conn.close()


def _idle(pool: list[_Connection]) -> _Connection | None:
    """The most recently used pooled connection still open, if any."""
    while pool:
        conn = pool.pop()
        if not conn.closed:
            return conn
    return None


class _RawStream:
    """An open answer; its connection goes back to the pool only if read to the end."""

    def __init__(self, owner: RawTransport, conn: _Connection) -> None:
        self._owner = owner
        self._conn = conn
        self._settled = False
        self.status = conn.status
        self.headers: Mapping[str, str] = conn.headers

    def _settle(self, clean: bool) -> None:
        if not self._settled:
            self._settled = True
            if clean:
                self._owner.release(self._conn)
            else:
                self._conn.close()

    async def read(self) -> bytes:
        try:
            body = await self._conn.read_all()
        except BaseException:
            self._settle(False)
            raise
        self._settle(True)
        return body

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        try:
            while (chunk := await self._conn.next_chunk()) is not None:
                yield chunk
        except BaseException:
            self._settle(False)
            raise
        self._settle(True)

    async def aclose(self) -> None:
        self._settle(self._conn.drained())
