"""The one HTTP client layer every remote provider shares.

A :class:`Transport` moves bytes: post a body and get the whole answer back,
or open a streaming post and read its body in chunks. Two implementations:
:class:`AiohttpTransport` (the default; one pooled ``ClientSession`` per event
loop) and :class:`MockTransport` (answers from a function, for tests).

:class:`HttpClient` sits on top of any transport and owns everything that is
the same for every provider: deadlines (total, and first byte for streams),
the time spent waiting on the upstream (``trace.upstream_s``), SSE decoding,
and the translation of failures into :mod:`thrifty.errors`, by type:

    TimeoutError                                   -> UpstreamTimeout
    aiohttp connection errors, ConnectionError     -> UpstreamConnectionError
    any other aiohttp.ClientError                  -> UpstreamError
    status 429                                     -> RateLimited(retry_after)
    status 400 with code context_length_exceeded   -> ContextWindowExceeded
    any other status >= 400                        -> UpstreamStatusError
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import orjson

from ..config import Deployment
from ..deadline import Timer
from ..errors import (
    ConfigError,
    ContextWindowExceeded,
    InvalidRequest,
    RateLimited,
    ThriftyError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from ..types import Trace
from ..validate import encode
from .sse import SseDataParser, SseEvent, SseParser

if TYPE_CHECKING:
    import aiohttp

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed to connect, for the whole exchange, and (streams) for the first byte."""

    connect: float = 10.0
    total: float = 600.0
    first_byte: float | None = None

    @classmethod
    def for_deployment(cls, deployment: Deployment) -> Timeouts:
        return cls(
            connect=deployment.connect_timeout,
            total=deployment.timeout,
            first_byte=deployment.first_token_timeout,
        )


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


# --------------------------------------------------------------------------- errors


def translate_error(exc: Exception) -> Exception:
    """A foreign exception raised while talking to an upstream, as a thrifty error."""
    if isinstance(exc, ThriftyError):
        return exc
    if isinstance(exc, TimeoutError):  # also aiohttp's ServerTimeoutError
        return UpstreamTimeout("the upstream did not answer in time")
    import aiohttp

    connection = (
        aiohttp.ClientConnectorError,
        aiohttp.ServerDisconnectedError,
        aiohttp.ClientOSError,
        aiohttp.ClientPayloadError,
        aiohttp.ClientConnectionError,
        ConnectionError,
    )
    if isinstance(exc, connection):
        return UpstreamConnectionError(f"upstream connection failed ({type(exc).__name__})")
    if isinstance(exc, aiohttp.ClientError):
        return UpstreamError(f"upstream request failed ({type(exc).__name__})")
    return exc


def build_body(deployment: str, build: Callable[[], Any]) -> bytes:
    """The upstream body a pure translation builds, as JSON bytes.

    Building the upstream request only reads the client's request, so any
    failure here is that request's fault: a 400 naming the field where it can
    (:func:`thrifty.validate.encode`), never an upstream error counted against
    the deployment.
    """
    try:
        return encode(build())
    except ThriftyError:
        raise
    except (
        TypeError,
        ValueError,
        KeyError,
        AttributeError,
        IndexError,
        OverflowError,
        RecursionError,
    ) as exc:
        raise InvalidRequest(
            f"The request cannot be translated for {deployment}: {type(exc).__name__}: {exc}"[:300],
            code="invalid_value",
        ) from None


def error_detail(body: bytes) -> tuple[str, str | None]:
    """The message and code of an OpenAI or Anthropic error body (or its raw text). Unsafe:
    the text is the upstream's own; :func:`error_summary` is what may reach a client."""
    message, code, _ = _error_fields(body)
    return message, code


def _error_fields(body: bytes) -> tuple[str, str | None, str | None]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:_SCAN].decode("utf-8", errors="replace").strip()
        return text or "(empty body)", None, None
    if not isinstance(data, dict):
        return str(data)[:_SCAN], None, None
    error = data.get("error")
    if isinstance(error, dict):
        message, code, kind = error.get("message"), error.get("code"), error.get("type")
        return (
            message if isinstance(message, str) else orjson.dumps(error).decode()[:_SCAN],
            code if isinstance(code, str) else None,
            kind if isinstance(kind, str) else None,
        )
    for key in ("error", "message", "detail"):
        if isinstance(data.get(key), str):
            return data[key], None, None
    return orjson.dumps(data).decode()[:_SCAN], None, None


# ---------------------------------------------------------------- what may leave thrifty

_SCAN = 4000  # characters of an upstream's error text examined; at most _SHOWN are shown
_SHOWN = 200
_NOT_SECRET = frozenset({"content-type", "accept", "anthropic-version", "user-agent"})
_WORD = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")  # codes and types: identifiers, nothing else
# Looks like a credential: a bearer token, a prefixed key (sk-..., pk_..., gsk_..., AIza...),
# or a long unbroken run of key characters containing a digit.
_KEYLIKE = re.compile(
    r"(?i)(?P<bearer>bearer\s+)\S+"
    r"|\b(?:sk|pk|rk|gsk|xai|key|aiza)[-_]?[A-Za-z0-9_-]{12,}"
    r"|\b(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{32,}"
)
REDACTED = "[redacted]"


def secrets_in(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The credentials among a request's headers (every value but a few known-harmless ones)."""
    found: list[str] = []
    for name, value in headers.items():
        if name.lower() in _NOT_SECRET or not value:
            continue
        found.append(value)
        scheme, _, token = value.partition(" ")
        if token and scheme.lower() in ("bearer", "basic", "token"):
            found.append(token.strip())
    return tuple(sorted(found, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with the given secrets and anything that looks like a key replaced."""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, REDACTED)
    return _KEYLIKE.sub(lambda m: (m.group("bearer") or "") + REDACTED, text)


def safe_text(text: str, secrets: Iterable[str] = ()) -> str:
    """An upstream's words made fit for a client or a log: one line, redacted, short."""
    text = redact(" ".join(text[:_SCAN].split()), secrets)
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def error_summary(body: bytes, secrets: Iterable[str] = ()) -> tuple[str, str | None]:
    """``"<error type>: <short safe message>"`` of an upstream error body, and its code.

    Upstreams echo what they were sent (some repeat the key they refused), so
    the text is cut short and anything key-like is redacted; type and code are
    kept only when they are plain identifiers.
    """
    secrets = tuple(secrets)
    message, code, kind = _error_fields(body)
    text = safe_text(message, secrets) or "(no message)"
    if _identifier(kind, secrets):
        text = f"{kind}: {text}"
    return text, code if _identifier(code, secrets) else None


def _identifier(value: str | None, secrets: tuple[str, ...]) -> bool:
    """A short plain name (an error type or code), and nothing that could be a key."""
    return value is not None and bool(_WORD.match(value)) and redact(value, secrets) == value


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    lower = {k.lower(): v for k, v in headers.items()}
    millis = _number(lower.get("retry-after-ms"))
    if millis is not None:
        return max(0.0, millis / 1000)
    value = lower.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return max(0.0, seconds)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def status_error(
    status: int, headers: Mapping[str, str], body: bytes, secrets: Iterable[str] = ()
) -> ThriftyError:
    """The thrifty error for an upstream's error status, its text summarised (:func:`error_summary`)."""
    message, code = error_summary(body, secrets)
    if status == 429:
        return RateLimited(f"upstream rate limit: {message}", retry_after=retry_after(headers))
    if status == 400 and code == "context_length_exceeded":
        return ContextWindowExceeded(message)
    return UpstreamStatusError(f"upstream returned {status}: {message}", upstream_status=status, code=code)


# --------------------------------------------------------------------------- client


class HttpClient:
    """Posts JSON through a transport with deadlines, timing and error translation."""

    def __init__(self, transport: Transport | None = None) -> None:
        self.transport: Transport = transport if transport is not None else shared_transport()

    async def post_json(self, request: HttpRequest, trace: Trace) -> Any:
        """The decoded JSON answer; raises a thrifty error for failures and error statuses."""
        deadline = asyncio.get_running_loop().time() + request.timeouts.total
        response = await _timed(self.transport.post(request), deadline, trace)
        if response.status >= 400:
            raise status_error(response.status, response.headers, response.body, secrets_in(request.headers))
        try:
            return orjson.loads(response.body)
        except orjson.JSONDecodeError as exc:
            raise UpstreamError("the upstream answered with invalid JSON") from exc

    async def events(self, request: HttpRequest, trace: Trace) -> AsyncGenerator[SseEvent, None]:
        """The SSE events of a streaming post; time blocked on the upstream goes to the trace."""
        parser = SseParser()
        async with contextlib.aclosing(self.body(request, trace)) as body:
            async for piece in body:
                for event in parser.feed(piece):
                    yield event
        for event in parser.flush():
            yield event

    async def data(self, request: HttpRequest, trace: Trace) -> AsyncGenerator[list[bytes], None]:
        """The SSE ``data`` payloads of a streaming post, as bytes, a list per read from the wire.

        For upstreams whose events carry no name (OpenAI's): no text decoding,
        no event objects, and one step of the generator chain per network read
        rather than per event.
        """
        parser = SseDataParser()
        async with contextlib.aclosing(self.body(request, trace)) as body:
            async for piece in body:
                payloads = parser.feed(piece)
                if payloads:
                    yield payloads
        last = parser.flush()
        if last:
            yield last

    async def body(self, request: HttpRequest, trace: Trace) -> AsyncGenerator[bytes, None]:
        """The body of a streaming post as it arrives, within the first-byte and total timeouts.

        One timer serves the whole stream (first byte, then total): a read pays
        two clock reads for ``trace.upstream_s``, not a timer of its own.
        """
        timeouts = request.timeouts
        first_byte = timeouts.first_byte is not None and 0 < timeouts.first_byte < timeouts.total
        timer = Timer(timeouts.first_byte if first_byte and timeouts.first_byte else timeouts.total)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeouts.total
        clock = time.perf_counter
        started = clock()
        try:
            try:
                response = await timer.run(self.transport.open_stream(request))
            except Exception as exc:
                raise translate_error(exc) from exc
            finally:
                trace.upstream_s += clock() - started
            chunks = response.chunks()
            try:
                if response.status >= 400:
                    timer.move(end - loop.time())
                    started = clock()
                    try:
                        body = await timer.run(response.read())
                    except Exception as exc:
                        raise translate_error(exc) from exc
                    finally:
                        trace.upstream_s += clock() - started
                    raise status_error(response.status, response.headers, body, secrets_in(request.headers))
                while True:
                    started = clock()
                    try:
                        chunk = await timer.run(anext(chunks, None))
                    except Exception as exc:
                        raise translate_error(exc) from exc
                    finally:
                        trace.upstream_s += clock() - started
                    if chunk is None:
                        break
                    if first_byte:
                        first_byte = False
                        timer.move(end - loop.time())
                    yield chunk
            finally:
                await chunks.aclose()
                await response.aclose()
        finally:
            timer.close()

    def open(self) -> None:
        self.transport.open()

    async def aclose(self) -> None:
        await self.transport.aclose()


async def _timed(awaitable: Awaitable[T], deadline: float, trace: Trace) -> T:
    started = time.perf_counter()
    try:
        async with asyncio.timeout_at(deadline):
            return await awaitable
    except Exception as exc:
        raise translate_error(exc) from exc
    finally:
        trace.upstream_s += time.perf_counter() - started


# --------------------------------------------------------------------------- aiohttp


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


TRANSPORTS = ("raw", "aiohttp")


@functools.cache
def shared_transport(kind: str = "raw") -> Transport:
    """The process-wide pooled transport remote backends share (``options.transport``).

    ``raw`` (lean HTTP/1.1 on httptools, :mod:`.rawhttp`) is the default: through
    ``thrifty serve`` it carried 1.56x the requests/s of aiohttp's client
    (docs/bench/providers.md). ``aiohttp`` stays available for what raw lacks
    (HTTP/2 is neither's; both ignore proxy variables).
    """
    if kind == "aiohttp":
        return AiohttpTransport()
    from .rawhttp import RawTransport  # rawhttp imports this module

    return RawTransport()


def deployment_transport(deployment: Deployment) -> Transport:
    """The shared transport a deployment's ``options.transport`` names."""
    kind = deployment.options.get("transport", "raw")
    if kind not in TRANSPORTS:
        raise ConfigError(
            f"deployment {deployment.name!r}: options.transport must be one of {', '.join(TRANSPORTS)}, got {kind!r}"
        )
    return shared_transport(kind)


# --------------------------------------------------------------------------- mock


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


# --------------------------------------------------------------------------- options


def option_mapping(deployment: Deployment, key: str) -> dict[str, Any]:
    """``deployment.options[key]`` as a dict (empty when absent); a ConfigError otherwise."""
    value = deployment.options.get(key) or {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"deployment {deployment.name!r}: options.{key} must be a mapping")
    return dict(value)


def extra_headers(deployment: Deployment) -> dict[str, str]:
    """``options.headers``: extra HTTP headers sent with every request of a deployment."""
    headers = option_mapping(deployment, "headers")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ConfigError(f"deployment {deployment.name!r}: options.headers must map strings to strings")
    return headers
