"""The one HTTP client layer every remote provider shares.

The bytes move through a :class:`~thrifty.transport.Transport` (the package
:mod:`thrifty.transport`: the lean raw transport by default, aiohttp on request,
MockTransport in tests). :class:`HttpClient` sits on top of any transport and
owns everything that is the same for every provider: deadlines (total, and
first byte for streams), the time spent waiting on the upstream
(``trace.upstream_s``), SSE decoding, and the translation of failures into
:mod:`thrifty.errors`, by type:

    a transport's own failures                     -> thrifty.transport.translate_error
    status 429                                     -> RateLimited(retry_after)
    status 400 with code context_length_exceeded   -> ContextWindowExceeded
    any other status >= 400                        -> UpstreamStatusError
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import orjson

from ..config import Deployment
from ..deadline import Timer
from ..errors import (
    ConfigError,
    ContextWindowExceeded,
    InvalidRequest,
    RateLimited,
    ThriftyError,
    UpstreamError,
    UpstreamStatusError,
)
from ..transport import TRANSPORTS, HttpRequest, Timeouts, Transport, shared_transport, translate_error
from ..types import Trace
from ..validate import encode
from .sse import SseDataParser, SseEvent, SseParser

T = TypeVar("T")


def timeouts_for(deployment: Deployment) -> Timeouts:
    """A deployment's connect, total and first-token limits."""
    return Timeouts(
        connect=deployment.connect_timeout,
        total=deployment.timeout,
        first_byte=deployment.first_token_timeout,
    )


# --------------------------------------------------------------------------- errors


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


def deployment_transport(deployment: Deployment) -> Transport:
    """The shared transport a deployment's ``options.transport`` names."""
    kind = deployment.options.get("transport", "raw")
    if kind not in TRANSPORTS:
        raise ConfigError(
            f"deployment {deployment.name!r}: options.transport must be one of {', '.join(TRANSPORTS)}, got {kind!r}"
        )
    return shared_transport(kind)


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
