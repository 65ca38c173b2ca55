"""The OpenAI-compatible HTTP layer: a thin Starlette app over a :class:`Gateway`.

Everything here is translation between HTTP and the gateway: read and check
the body, map ``x-thrifty-*`` headers to per-request options, turn the trace
into response headers, write JSON or SSE, and map every :class:`ThriftyError`
to OpenAI's error JSON in one function (:func:`error_response`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from ..errors import (
    AuthenticationError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ThriftyError,
)
from ..gateway import Gateway
from ..types import ChatRequest, Chunk
from ..validate import chat_request, parse_json

log = logging.getLogger("thrifty.server")

JSON = "application/json"
_HEADER_PREFIX = "x-thrifty-"


def error_response(exc: ThriftyError) -> Response:
    """The one place a thrifty error becomes an HTTP response."""
    return Response(orjson.dumps(exc.to_json()), status_code=exc.status, media_type=JSON, headers=exc.headers())


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON, headers=headers)


class Server:
    """Request handlers bound to one gateway."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        server = gateway.config.server
        self.api_keys = tuple(k.encode() for k in server.api_keys)
        self.max_body = server.max_body_bytes
        self.max_depth = server.max_json_depth

    # -- request plumbing ---------------------------------------------------

    def authenticate(self, request: Request) -> str:
        """Return the caller's key; raise 401 when keys are configured and it is wrong."""
        header = request.headers.get("authorization", "")
        key = header[7:].strip() if header[:7].lower() == "bearer " else request.headers.get("x-api-key", "")
        if not self.api_keys:
            return key
        if not key:
            raise AuthenticationError(
                "Missing API key: send 'Authorization: Bearer <key>'.", code="missing_api_key"
            )
        raw = key.encode()
        if not any(hmac.compare_digest(raw, k) for k in self.api_keys):
            raise AuthenticationError("Incorrect API key provided.")
        return key

    async def read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise PayloadTooLarge(f"The request body is {declared} bytes; the limit is {self.max_body}.")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise PayloadTooLarge(f"The request body exceeds the limit of {self.max_body} bytes.")
            chunks.append(chunk)
        return b"".join(chunks)

    def tenant(self, key: str, requested: Any) -> str:
        """The cache/ledger partition: the caller's key, sub-divided as the caller asks.

        A client may name a tenant, but only inside its own key's space, so no
        key can read another key's cached answers.
        """
        if requested is not None and not isinstance(requested, str):
            raise InvalidRequest("'tenant' must be a string.", param="tenant")
        owner = self.gateway.key_hash(key) if self.api_keys else ""
        if owner and requested:
            return f"{owner}/{requested}"
        return owner or requested or ""

    @staticmethod
    def header_options(request: Request) -> dict[str, Any]:
        options: dict[str, Any] = {}
        for name, value in request.headers.items():
            if name.startswith(_HEADER_PREFIX):
                options[name[len(_HEADER_PREFIX) :]] = value
        return options

    @staticmethod
    def response_headers(req: ChatRequest, overhead_s: float) -> dict[str, str]:
        trace = req.trace
        headers = {
            "x-thrifty-model": trace.deployment or req.model,
            "x-thrifty-overhead-ms": f"{overhead_s * 1000:.3f}",
            "x-thrifty-request-id": trace.request_id,
        }
        for key, value in trace.annotations.items():
            headers[_HEADER_PREFIX + key] = value
        return headers

    # -- endpoints -----------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        try:
            key = self.authenticate(request)
            body = parse_json(await self.read_body(request), self.max_depth)
            req = chat_request(body, self.header_options(request))
            req.trace.api_key = key
            req.trace.tenant = self.tenant(key, req.options.get("tenant"))
            if req.stream:
                return await self._stream(req)
            response = await self.gateway.complete(req)
        except ThriftyError as exc:
            return error_response(exc)
        trace = req.trace
        overhead = time.perf_counter() - trace.started - trace.upstream_s
        return Response(
            orjson.dumps(response.body),
            media_type=JSON,
            headers=self.response_headers(req, max(0.0, overhead)),
        )

    async def _stream(self, req: ChatRequest) -> Response:
        chunks = self.gateway.stream(req).__aiter__()
        # Wait for the first chunk before sending headers: a failure before the
        # first byte is still a plain HTTP error, and the headers can say which
        # deployment answered.
        try:
            first = await chunks.__anext__()
        except StopAsyncIteration:
            first = None
        trace = req.trace
        overhead = max(0.0, time.perf_counter() - trace.started - trace.upstream_s)
        return StreamingResponse(
            _sse(first, chunks, req.include_usage),
            media_type="text/event-stream",
            headers={**self.response_headers(req, overhead), "cache-control": "no-cache"},
        )

    async def models(self, request: Request) -> Response:
        try:
            self.authenticate(request)
        except ThriftyError as exc:
            return error_response(exc)
        created = int(time.time())
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": "thrifty"}
            for name in self.gateway.models()
        ]
        return json_response({"object": "list", "data": data})

    async def embeddings(self, request: Request) -> Response:
        try:
            self.authenticate(request)
            body = parse_json(await self.read_body(request), self.max_depth)
            model = body.get("model")
            texts = body.get("input")
            if not isinstance(model, str) or not model:
                raise InvalidRequest("'model' is required and must be a non-empty string.", param="model")
            if isinstance(texts, str):
                texts = [texts]
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                raise InvalidRequest(
                    "'input' must be a non-empty string or array of strings.", param="input"
                )
            vectors, tokens = await self.gateway.embed(model, texts)
        except ThriftyError as exc:
            return error_response(exc)
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return json_response({"object": "list", "data": data, "model": model, "usage": usage})

    async def purge_cache(self, request: Request) -> Response:
        """``POST /v1/cache/purge {"namespace": "x"}``: forget a namespace on every level."""
        try:
            self.authenticate(request)
            body = parse_json(await self.read_body(request), self.max_depth)
            namespace = body.get("namespace")
            if not isinstance(namespace, str) or not namespace:
                raise InvalidRequest("'namespace' is required and must be a non-empty string.", param="namespace")
            removed = 0
            for layer in self.gateway.stack.walk():
                purge = getattr(layer, "purge", None)
                if callable(purge):
                    removed += await purge(namespace)
        except ThriftyError as exc:
            return error_response(exc)
        return json_response({"namespace": namespace, "removed": removed})

    async def admin_status(self, request: Request) -> Response:
        """``GET /admin/status``: breaker states, queues, cache and router counters."""
        try:
            self.authenticate(request)
        except ThriftyError as exc:
            return error_response(exc)
        return Response(orjson.dumps(self.gateway.status(), default=str), media_type=JSON)

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        if self.gateway.ready:
            return json_response({"status": "ready", "models": self.gateway.models()})
        return json_response({"status": "loading"}, status=503)


async def _sse(first: Chunk | None, rest: AsyncIterator[Chunk], include_usage: bool) -> AsyncIterator[bytes]:
    """OpenAI's SSE framing; an error after the first byte becomes an error event."""
    try:
        if first is not None and (include_usage or first.get("choices")):
            yield b"data: " + orjson.dumps(first) + b"\n\n"
        async for chunk in rest:
            if not chunk.get("choices") and not include_usage:
                continue
            yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    except ThriftyError as exc:
        log.warning("stream failed after the first byte: %s", exc.message)
        yield b"data: " + orjson.dumps(exc.to_json()) + b"\n\n"
    finally:
        with contextlib.suppress(Exception):
            await rest.aclose()  # type: ignore[attr-defined]
    yield b"data: [DONE]\n\n"


async def _not_found(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        err = ThriftyError(f"Method {request.method} is not allowed on {request.url.path}.", status=405)
        err.type = "invalid_request_error"
        return error_response(err)
    return error_response(NotFound(f"No endpoint {request.method} {request.url.path}."))


async def _internal(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path, exc_info=exc)
    return error_response(ThriftyError("The gateway failed unexpectedly; the error was logged."))


class App:
    """The ASGI entry point: chat completions go straight to their handler.

    Every other path (and the lifespan) goes through the Starlette app. The
    hot route skips Starlette's middleware and router: on a proxy whose whole
    budget is a few hundred microseconds per request, those layers were a
    tenth of it. Its handler already turns every error into OpenAI's JSON.
    """

    def __init__(self, server: Server, starlette: Starlette) -> None:
        self.server = server
        self.starlette = starlette

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in _CHAT_PATHS and scope["method"] == "POST":
            request = Request(scope, receive)
            try:
                response = await self.server.chat_completions(request)
            except Exception as exc:
                response = await _internal(request, exc)
            await response(scope, receive, send)
            return
        await self.starlette(scope, receive, send)

    @property
    def routes(self) -> list[BaseRoute]:
        return self.starlette.routes


_CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})


def create_app(gateway: Gateway, extra_routes: Sequence[BaseRoute] = ()) -> App:
    """The ASGI app: OpenAI routes, the capabilities' routes, lifespan = gateway."""
    server = Server(gateway)
    routes: list[BaseRoute] = [
        Route("/v1/chat/completions", server.chat_completions, methods=["POST"]),
        Route("/chat/completions", server.chat_completions, methods=["POST"]),
        Route("/v1/models", server.models, methods=["GET"]),
        Route("/v1/embeddings", server.embeddings, methods=["POST"]),
        Route("/v1/cache/purge", server.purge_cache, methods=["POST"]),
        Route("/admin/status", server.admin_status, methods=["GET"]),
        Route("/health", server.health, methods=["GET"]),
        Route("/ready", server.ready, methods=["GET"]),
    ]
    if gateway.observer is not None:
        routes.extend(gateway.observer.routes())
    from ..tasks.batch_server import BatchService
    from ..tasks.settings import parse_tasks
    from . import openapi

    config = gateway.config
    batches = BatchService(gateway, config.server.data_dir, parse_tasks(config))
    routes.extend(batches.routes())
    routes.append(openapi.route(config.server))
    routes.extend(extra_routes)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Load models in the background: /health answers at once, /ready when loaded.
        task = asyncio.ensure_future(gateway.start())
        task.add_done_callback(_log_start_failure)
        await batches.start()  # resumes batch jobs a previous run left unfinished
        try:
            yield
        finally:
            if not task.done():
                task.cancel()
            await batches.aclose()
            await gateway.aclose()

    starlette = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _not_found, Exception: _internal},
    )
    return App(server, starlette)


def _log_start_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("loading models failed: %s", task.exception())
