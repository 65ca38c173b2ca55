"""The connection layer: uvicorn's httptools protocol with the bounds a public door needs.

A client may hold a connection only while it is useful:

* **header limits**: the request line plus headers may take ``max_header_bytes`` and
  ``max_headers`` lines; beyond either the client gets 431 and the connection closes. Bytes
  are counted as they arrive, so a header that never ends is refused before it is buffered.
* **header timeout**: a request's headers must arrive within ``header_timeout`` of its first
  byte (of the connection, for a new one); a silent or dribbling client (slowloris) is closed.
  The same bound applies to each pause inside a request body (slow POST).
* **keep-alive timeout**: an idle keep-alive connection is closed after ``keepalive_timeout``.
* **connection cap**: past ``max_connections`` the connection that has been idle longest (no
  request in flight) is closed to make room, so an idle flood cannot lock real clients out;
  when every connection is busy the newcomer is answered 503.

Every refusal is OpenAI's error JSON. A keep-alive request costs a few attribute updates and two
dict operations over plain uvicorn, and no extra timer (about 2.5 µs, measured by
``benchmarks/reliability.py --hot-path``).

The shared state (:class:`ConnectionGuard`) belongs to one server: :func:`guarded_protocol`
binds a fresh guard into the protocol class handed to ``uvicorn.Config(http=...)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from asyncio import TimerHandle
from dataclasses import dataclass
from typing import Any

import httptools
import orjson
from uvicorn.config import Config as UvicornConfig
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from ..config import ServerConfig
from ..errors import InvalidRequest, ThriftyError

logger = logging.getLogger("thrifty.server")


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    max_connections: int = 2048
    keepalive_timeout: float = 5.0
    header_timeout: float = 10.0

    @classmethod
    def from_server(cls, server: ServerConfig) -> ConnectionLimits:
        return cls(
            max_header_bytes=server.max_header_bytes,
            max_headers=server.max_headers,
            max_connections=server.max_connections,
            keepalive_timeout=server.keepalive_timeout,
            header_timeout=server.header_timeout,
        )


def _error_response(error: ThriftyError) -> bytes:
    """A complete HTTP/1.1 response carrying ``error`` that closes the connection."""
    body = orjson.dumps(error.to_json())
    head = (
        f"HTTP/1.1 {error.status} {_REASONS.get(error.status, 'Error')}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


_REASONS = {400: "Bad Request", 431: "Request Header Fields Too Large", 503: "Service Unavailable"}


class ConnectionGuard:
    """One server's connections: every open one, and the idle ones oldest-idle first."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open: dict[GuardedProtocol, None] = {}
        self.idle: dict[GuardedProtocol, None] = {}  # insertion order = idle since, oldest first
        self.evicted = 0
        self.refused = 0
        self.timed_out = 0
        self.too_large = 0
        self._last_report = -60.0
        self.too_large_response = _error_response(
            InvalidRequest(
                f"request headers exceed this server's limits ({limits.max_header_bytes} bytes "
                f"for the request line and headers, {limits.max_headers} headers)",
                code="request_header_fields_too_large",
                status=431,
            )
        )
        self.busy_response = _error_response(
            ThriftyError(
                f"the server is at its connection limit ({limits.max_connections}) and every "
                "connection has a request in flight; retry shortly",
                code="too_many_connections",
                status=503,
            )
        )
        self.bad_request_response = _error_response(
            InvalidRequest("malformed HTTP request", code="invalid_http_request")
        )

    def admit(self, conn: GuardedProtocol) -> bool:
        """Register a new connection; make room by closing the longest-idle one if needed.

        False when the server is full of busy connections: the newcomer is to be refused.
        """
        if len(self.open) >= self.limits.max_connections:
            self._report_full()
            if not self.idle:
                self.refused += 1
                return False
            oldest = next(iter(self.idle))
            self.forget(oldest)
            self.evicted += 1
            oldest.transport.close()
        self.open[conn] = None
        self.idle[conn] = None
        return True

    def _report_full(self) -> None:
        """One log line a minute at most while the cap is being hit."""
        now = time.monotonic()
        if now - self._last_report >= 60.0:
            self._last_report = now
            logger.warning(
                "connection cap (server.max_connections = %d) reached: %d idle connections "
                "closed to make room, %d newcomers refused so far",
                self.limits.max_connections,
                self.evicted,
                self.refused,
            )

    def forget(self, conn: GuardedProtocol) -> None:
        self.open.pop(conn, None)
        self.idle.pop(conn, None)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol under a :class:`ConnectionGuard`'s bounds."""

    guard: ConnectionGuard  # bound per server by guarded_protocol()

    def __init__(
        self,
        config: UvicornConfig,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        limits = self.guard.limits
        self.timeout_keep_alive = limits.keepalive_timeout  # type: ignore[assignment]  # float is fine
        self._header_timeout = limits.header_timeout
        self._max_header_bytes = limits.max_header_bytes
        self._max_headers = limits.max_headers
        # The first request's header deadline, or a body's idle deadline. Later requests' header
        # deadlines ride on uvicorn's keep-alive timer (see timeout_keep_alive_handler), so a
        # keep-alive request costs no timer beyond the one uvicorn already sets.
        self._timer: TimerHandle | None = None
        self._header_started = 0.0  # loop time of the current message's first byte
        self._busy = False  # a request's headers are in and its response is not finished
        self._body_pending = False  # a request's headers are in and its body is not
        self._in_headers = False  # between a message's first byte and the end of its headers
        self._received = 0  # bytes since the current message began (at most one read over)
        self._chunk = 0  # size of the read being parsed
        self._admitted = True
        self._refused = False  # answered with an error; reads are discarded until close

    # connection lifecycle

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._admitted = self.guard.admit(self)
        self._timer = self.loop.call_later(self._header_timeout, self._headers_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.forget(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    # reading

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        # unlike uvicorn, the keep-alive timer is left running: it also bounds the next headers
        if self._body_pending and self._timer is not None:
            self._timer.cancel()  # the body is moving: its idle clock restarts after this read
            self._timer = None
        self._chunk = len(data)
        self._received += self._chunk
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            self._refuse(self.guard.bad_request_response)  # no-op when a callback refused
            return
        if self._in_headers and self._received > self._max_header_bytes:
            self._headers_too_large()
        elif self._body_pending and self._timer is None:
            self._timer = self.loop.call_later(self._header_timeout, self._body_too_slow)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_started = self.loop.time()
        self._received = self._chunk  # an overestimate by at most the rest of this read

    def on_headers_complete(self) -> None:
        self._in_headers = False
        if len(self.headers) > self._max_headers or (
            self._received > self._max_header_bytes and self._header_bytes() > self._max_header_bytes
        ):
            self._headers_too_large()
            raise _Refused
        self._received = 0
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._admitted:
            self._refuse(self.guard.busy_response)
            raise _Refused
        self._busy = self._body_pending = True
        self.guard.idle.pop(self, None)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._body_pending = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        more = bool(self.pipeline)
        super().on_response_complete()
        if not more and not self.transport.is_closing():
            self._busy = False
            if self in self.guard.open:
                self.guard.idle[self] = None

    # refusals

    def _header_bytes(self) -> int:
        return len(self.url) + 12 + sum(len(name) + len(value) + 4 for name, value in self.headers)

    def _headers_too_large(self) -> None:
        self.guard.too_large += 1
        self._refuse(self.guard.too_large_response)

    def _headers_too_slow(self) -> None:
        self._timer = None
        if not self._busy and not self.transport.is_closing():
            self.guard.timed_out += 1
            self._close()

    def timeout_keep_alive_handler(self) -> None:
        """uvicorn's keep-alive timer, armed when a response completes, fired: close the connection
        if it is still idle, or if the next request's headers have run past ``header_timeout``."""
        self.timeout_keep_alive_task = None
        if self._busy or self.transport.is_closing():
            return  # a request arrived in time; the next response re-arms the timer
        if self._in_headers:
            left = self._header_started + self._header_timeout - self.loop.time()
            if left > 0:
                self.timeout_keep_alive_task = self.loop.call_later(left, self.timeout_keep_alive_handler)
                return
            self.guard.timed_out += 1
        self._close()

    def _close(self) -> None:
        self.guard.forget(self)
        self.transport.close()

    def _body_too_slow(self) -> None:
        """No body bytes for ``header_timeout`` while the request waits for them: close."""
        self._timer = None
        if not self._body_pending or self.transport.is_closing():
            return
        if self.flow.read_paused:  # the app is not reading yet: the wait is ours, not the client's
            self._timer = self.loop.call_later(self._header_timeout, self._body_too_slow)
            return
        self.guard.timed_out += 1
        self._close()

    def _refuse(self, response: bytes) -> None:
        """Answer and close, reading (and dropping) what the client still sends for a moment.

        Closing a socket with unread input makes the kernel send a reset, which can destroy the
        answer before the client reads it; so the write side is shut first and reads are
        discarded until the client closes or ``_LINGER`` seconds pass.
        """
        if self._refused:
            return
        self._refused = True
        self.guard.forget(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(response)
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(_LINGER, transport.close)
        else:
            transport.close()


_LINGER = 2.0  # seconds a refused connection may keep sending before it is cut


class _Refused(Exception):
    """Stops the parser after a refusal was written (raised from a parser callback)."""


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedProtocol]:
    """A protocol class bound to a fresh guard: pass it as ``http=`` to one uvicorn server."""

    class ServerProtocol(GuardedProtocol):
        guard = ConnectionGuard(limits)

    return ServerProtocol
