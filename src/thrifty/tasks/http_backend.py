"""A backend that sends chat requests to a running gateway (or any OpenAI-compatible server).

Used by ``thrifty batch run --url``. HTTP failures are translated to thrifty's
error tree by status and exception type, so the task manager retries what is
retryable and the adaptive limit sees 429s and timeouts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson

from ..errors import (
    RateLimited,
    ThriftyError,
    UpstreamConnectionError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from ..types import ChatRequest, ChatResponse, Chunk, Usage

if TYPE_CHECKING:
    import aiohttp


class HttpBackend:
    """POST /v1/chat/completions to ``url`` with aiohttp; no streaming."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 600.0, name: str = "http") -> None:
        base = url.rstrip("/")
        self.endpoint = base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")
        self.api_key = api_key
        self.timeout = timeout
        self.name = name
        self._session: aiohttp.ClientSession | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as its settings (for Ray workers), never with a live session."""
        base = self.endpoint.removesuffix("/chat/completions")
        return (_rebuild, (base, self.api_key, self.timeout, self.name))

    async def start(self) -> None:
        if self._session is None:
            import aiohttp

            headers = {"content-type": "application/json"}
            if self.api_key:
                headers["authorization"] = f"Bearer {self.api_key}"
            self._session = aiohttp.ClientSession(
                headers=headers,
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            )

    async def aclose(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        import aiohttp

        await self.start()
        assert self._session is not None
        payload = orjson.dumps(request.to_openai())
        try:
            async with self._session.post(self.endpoint, data=payload) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise _status_error(resp.status, raw, resp.headers.get("retry-after"))
                request_id = resp.headers.get("x-thrifty-request-id")
        except aiohttp.ClientConnectionError as exc:
            raise UpstreamConnectionError(f"{self.endpoint}: {type(exc).__name__}: {exc}") from exc
        except TimeoutError as exc:
            raise UpstreamTimeout(f"{self.endpoint}: no answer within {self.timeout:g} s") from exc
        body = orjson.loads(raw)
        if request_id:
            request.trace.request_id = request_id
        return ChatResponse(body=body, usage=Usage.from_json(body.get("usage")))

    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        raise NotImplementedError("HttpBackend is for batches: it does not stream")


def _rebuild(base: str, api_key: str | None, timeout: float, name: str) -> HttpBackend:
    return HttpBackend(base, api_key=api_key, timeout=timeout, name=name)


def _status_error(status: int, raw: bytes, retry_after: str | None) -> ThriftyError:
    message = f"HTTP {status}"
    try:
        detail = orjson.loads(raw).get("error", {}).get("message")
        if isinstance(detail, str):
            message = detail
    except (orjson.JSONDecodeError, AttributeError):
        pass
    if status == 429:
        try:
            after = float(retry_after) if retry_after else None
        except ValueError:
            after = None
        return RateLimited(message, retry_after=after)
    if status == 504:
        return UpstreamTimeout(message)
    return UpstreamStatusError(message, upstream_status=status)
