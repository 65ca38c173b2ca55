"""The OpenAI-compatible HTTP layer: a thin Starlette app over a :class:`Gateway`.

Everything here is translation between HTTP and the gateway: read and check
the body, map ``x-thrifty-*`` headers to per-request options, turn the trace
into response headers, write JSON or SSE, and map every :class:`ThriftyError`
to OpenAI's error JSON in one function (:func:`error_response`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping, Sequence
from typing import Any, TypeVar

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..cache.keys import EVERY_TENANT, scoped_namespace
from ..config import CorsConfig
from ..errors import InvalidRequest, NotFound, ThriftyError
from ..gateway import Gateway
from ..types import ChatRequest, ChatResponse, Piece, RawEvents, response_headers
from ..validate import chat_request, parse_json
from .access import Access, Caller, read_body, read_json
from .embedding_inputs import check_dimensions, check_format, embedding_texts, encode_vector, is_token

log = logging.getLogger("thrifty.server")
P = TypeVar("P")

JSON = "application/json"
_HEADER_PREFIX = "x-thrifty-"


def error_response(exc: ThriftyError) -> Response:
    """The one place a thrifty error becomes an HTTP response."""
    return Response(
        orjson.dumps(exc.to_json()), status_code=exc.status, media_type=JSON, headers=exc.headers()
    )


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON, headers=headers)


class Server:
    """Request handlers bound to one gateway."""

    def __init__(self, gateway: Gateway, access: Access | None = None) -> None:
        self.gateway = gateway
        server = gateway.config.server
        self.access = access or Access(server, tenancy=gateway.tenancy, key_hash=gateway.key_hash)
        self.max_body = server.max_body_bytes
        self.max_depth = server.max_json_depth
        self.max_inputs = server.max_embedding_inputs
        self.max_tokens = server.max_embedding_tokens

    # -- request plumbing ---------------------------------------------------

    async def read_body(self, request: Request) -> bytes:
        return await read_body(request, self.max_body)

    async def read_json(self, request: Request) -> dict[str, Any]:
        return await read_json(request, self.max_body, self.max_depth)

    def tenant(self, caller: Caller, requested: Any) -> str:
        """The cache/ledger partition: the caller's key, sub-divided as the caller asks.

        A client may name a tenant, but only inside its own key's space, so no
        key can read another key's cached answers.
        """
        if requested is not None and not isinstance(requested, str):
            raise InvalidRequest("'tenant' must be a string.", param="tenant")
        owner = caller.key_id if self.access.required else ""
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

    def attribute(self, req: ChatRequest, caller: Caller, user: Any) -> None:
        """Mark a request as the caller's: key, tenant, budgets, end user."""
        trace = req.trace
        trace.api_key, trace.key_id, trace.principal = caller.key, caller.key_id, caller.principal
        trace.tenant = self.tenant(caller, req.options.get("tenant"))
        if isinstance(user, str):
            trace.user = user[:256]

    @staticmethod
    def response_headers(req: ChatRequest, overhead_s: float) -> dict[str, str]:
        return response_headers(req.trace, req.model, overhead_s)

    @staticmethod
    def answer_headers(req: ChatRequest) -> dict[str, str]:
        """The ``x-thrifty-*`` headers of an answer ready now (overhead: time so far minus upstream time)."""
        trace = req.trace
        overhead = time.perf_counter() - trace.started - trace.upstream_s
        return response_headers(trace, req.model, max(0.0, overhead))

    # -- endpoints -----------------------------------------------------------

    async def chat_completions(self, request: Request) -> Response:
        try:
            caller = await self.access.authenticate(request)
            body = parse_json(await self.read_body(request), self.max_depth)
            req = chat_request(body, self.header_options(request))
            self.attribute(req, caller, body.get("user"))
            if req.stream:
                return await self._stream(req, request.receive)
            response = await complete_watched(self.gateway, req, request.receive)
        except ClientLeft:
            return Response(status_code=499)
        except ThriftyError as exc:
            return error_response(exc)
        trace = req.trace
        overhead = time.perf_counter() - trace.started - trace.upstream_s
        return Response(
            orjson.dumps(response.body),
            media_type=JSON,
            headers=self.response_headers(req, max(0.0, overhead)),
        )

    async def _stream(self, req: ChatRequest, receive: Receive) -> Response:
        chunks = self.gateway.stream_pieces(req).__aiter__()
        try:
            first = await first_chunk(chunks, receive)
        except ClientLeft:
            return Response(status_code=499)
        trace = req.trace
        overhead = max(0.0, time.perf_counter() - trace.started - trace.upstream_s)
        return _EventStream(
            _sse(first, chunks, req.include_usage),
            media_type="text/event-stream",
            headers={**self.response_headers(req, overhead), "cache-control": "no-cache"},
        )

    async def models(self, request: Request) -> Response:
        try:
            await self.access.authenticate(request)
        except ThriftyError as exc:
            return error_response(exc)
        created = int(time.time())
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": "thrifty"}
            for name in self.gateway.models()
        ]
        return json_response({"object": "list", "data": data})

    async def model(self, request: Request) -> Response:
        """``GET /v1/models/{model}``: one model the gateway serves, or a 404 naming the ones it does."""
        try:
            await self.access.authenticate(request)
            name = request.path_params["model"]
            models = self.gateway.models()
            if name not in models:
                raise NotFound(
                    f"The model '{name}' does not exist; available: {', '.join(models)}.",
                    param="model",
                    code="model_not_found",
                )
        except ThriftyError as exc:
            return error_response(exc)
        return json_response(
            {"id": name, "object": "model", "created": int(time.time()), "owned_by": "thrifty"}
        )

    async def embeddings(self, request: Request) -> Response:
        try:
            await self.access.authenticate(request)
            body = await self.read_json(request)
            model = body.get("model")
            if not isinstance(model, str) or not model:
                raise InvalidRequest("'model' is required and must be a non-empty string.", param="model")
            fmt = check_format(body.get("encoding_format"))
            dimensions = check_dimensions(body.get("dimensions"))
            texts = self.embedding_inputs(body.get("input"))
            vectors, tokens = await self.gateway.embed(model, texts, dimensions)
        except ThriftyError as exc:
            return error_response(exc)
        data = [
            {"object": "embedding", "index": i, "embedding": encode_vector(v, fmt)}
            for i, v in enumerate(vectors)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return json_response({"object": "list", "data": data, "model": model, "usage": usage})

    def embedding_inputs(self, value: Any) -> list[str]:
        """``input`` as a list of texts (token ids decoded), within the configured count and rough token bounds."""
        # counted before decoding: an array of token ids is one input, any other array one per item
        count = len(value) if isinstance(value, list) and not all(is_token(t) for t in value) else 1
        if count > self.max_inputs:
            raise InvalidRequest(
                f"'input' has {count} items; the limit is {self.max_inputs} per request "
                "(server.max_embedding_inputs).",
                param="input",
                code="too_many_inputs",
            )
        texts = embedding_texts(value)
        tokens = sum(len(t) for t in texts) // 4  # rough: about four characters a token
        if tokens > self.max_tokens:
            raise InvalidRequest(
                f"'input' is about {tokens} tokens; the limit is {self.max_tokens} per request "
                "(server.max_embedding_tokens).",
                param="input",
                code="too_many_tokens",
            )
        return texts

    async def purge_cache(self, request: Request) -> Response:
        """``POST /v1/cache/purge {"namespace": "x", "tenant"?: "t"}``: forget a namespace on every level.

        A client key purges only inside its own tenant space (the space its
        requests are cached in, or the sub-tenant it names). An admin key
        purges the namespace in every tenant's space, or in the one tenant it
        names exactly as the ledger records it.
        """
        try:
            caller = await self.access.authenticate(request)
            body = await self.read_json(request)
            namespace = body.get("namespace")
            if not isinstance(namespace, str) or not namespace:
                raise InvalidRequest(
                    "'namespace' is required and must be a non-empty string.", param="namespace"
                )
            requested = body.get("tenant", request.headers.get(_HEADER_PREFIX + "tenant"))
            if requested is not None and not isinstance(requested, str):
                raise InvalidRequest("'tenant' must be a string.", param="tenant")
            if caller.is_admin:
                tenant = EVERY_TENANT if requested is None else requested
            else:
                tenant = self.tenant(caller, requested)
            scoped = scoped_namespace(tenant, namespace)
            removed = await self.gateway.stack.purge(scoped)
        except ThriftyError as exc:
            return error_response(exc)
        return json_response({"namespace": namespace, "tenant": tenant, "removed": removed})

    async def admin_status(self, request: Request) -> Response:
        """``GET /admin/status``: breaker states, queues, cache and router counters."""
        try:
            await self.access.admin(request)
        except ThriftyError as exc:
            return error_response(exc)
        return Response(orjson.dumps(self.gateway.status(), default=str), media_type=JSON)

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        """200 once loaded: ``ready``, or ``degraded`` with the reasons when a part serves without its store."""
        if not self.gateway.ready:
            return json_response({"status": "loading"}, status=503)
        reasons = self.gateway.degraded()
        if reasons:
            return json_response({"status": "degraded", "reasons": reasons, "models": self.gateway.models()})
        return json_response({"status": "ready", "models": self.gateway.models()})


class ClientLeft(Exception):
    """The client went away before its answer began (answer 499 to nobody)."""


async def first_chunk(chunks: AsyncIterator[P], receive: Receive) -> P | None:
    """Wait for a stream's first chunk before any header is sent.

    A failure before the first byte is still a plain HTTP error, and the
    headers can say which deployment answered. A client that leaves meanwhile
    cancels the wait (:class:`ClientLeft`); after the first byte, Starlette's
    streaming response watches for it.
    """
    watch = _DisconnectWatch(receive)
    try:
        return await chunks.__anext__()
    except StopAsyncIteration:
        return None
    except asyncio.CancelledError:
        if not watch.left():
            raise
        raise ClientLeft from None
    finally:
        watch.stop()


async def complete_watched(gateway: Gateway, req: ChatRequest, receive: Receive) -> ChatResponse:
    """``gateway.complete``, cancelled if the client leaves first (:class:`ClientLeft`)."""
    watch = _DisconnectWatch(receive)
    try:
        return await gateway.complete(req)
    except asyncio.CancelledError:
        if not watch.left():
            raise
        raise ClientLeft from None  # nobody is listening; the gateway recorded it
    finally:
        watch.stop()


class _DisconnectWatch:
    """Cancels the current task when the client goes away before its answer is ready.

    The body has been read, so the next ASGI ``receive`` only returns when the
    client disconnects (or the response is done). Waiting for it costs a task,
    so the watch starts only once a request has taken ``AFTER`` seconds: a
    dropped client is noticed within that, and quick answers pay one timer.
    """

    AFTER = 0.05
    __slots__ = ("_receive", "_task", "_handle", "_watcher", "_left")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task = asyncio.current_task()
        self._watcher: asyncio.Task[None] | None = None
        self._left = False
        self._handle = asyncio.get_running_loop().call_later(self.AFTER, self._start)

    def _start(self) -> None:
        self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        message = await self._receive()
        if message["type"] != "http.disconnect":
            return  # not a server that keeps ASGI's promise; stop watching rather than spin
        if self._task is not None and not self._task.done():
            self._left = True
            self._task.cancel()

    def left(self) -> bool:
        """Whether the client left (and this watch cancelled the task: undo that, it is handled)."""
        if self._left and self._task is not None:
            self._left = False
            self._task.uncancel()
            return True
        return False

    def stop(self) -> None:
        self._handle.cancel()
        if self._watcher is not None:
            self._watcher.cancel()


class _EventStream(StreamingResponse):
    """An SSE answer written from the handler's own task, small writes batched.

    Starlette's streaming response runs a task group per answer, a task to
    write and a task to listen for the client leaving. Here the one
    :class:`_DisconnectWatch` does the listening: a stream over within 50 ms
    pays one timer, a longer one a single watcher task. A client that leaves
    cancels the stream, which closes the upstream.

    Batching never delays a byte: each step of the event stream is started by
    hand; pieces that are ready at once (an upstream read that carried several
    events) are joined, and everything ready is written the moment the stream
    would have to wait for its upstream, or at its end.
    """

    body_iterator: AsyncIterator[bytes]
    BATCH = 64  # pieces at most in one write

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = self.body_iterator
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        watch = _DisconnectWatch(receive)
        ready: list[bytes] = []
        unsent: Any = None  # a write that had to wait for the socket to drain (a slow reader)
        try:
            while True:
                step: Any = body.__anext__()
                try:
                    signal = step.send(None)
                except StopIteration as done:  # ready at once: batch it
                    ready.append(done.value)
                    if len(ready) < self.BATCH:
                        continue
                    await send(_body(ready))
                    continue
                except StopAsyncIteration:
                    break
                # The stream waits for its upstream now: what is ready goes out first,
                # without awaiting, for the step is half-run (a write that must wait for
                # the socket to drain is finished after the step).
                if ready:
                    write: Any = send(_body(ready))
                    try:
                        write_signal = write.send(None)
                    except StopIteration:
                        pass
                    except BaseException as exc:  # unwind the half-run step with it
                        await _Resume(step, None, exc)
                        raise
                    else:
                        unsent = _Resume(write, write_signal)
                ready.append(await _Resume(step, signal))
                if unsent is not None:  # a slow reader: wait for it before reading on (backpressure)
                    await unsent
                    unsent = None
            if ready:
                await send(_body(ready))
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not watch.left():
                raise
        finally:
            watch.stop()
            if unsent is not None:
                unsent.close()
            await body.aclose()  # type: ignore[attr-defined]


def _body(ready: list[bytes]) -> dict[str, Any]:
    """One ASGI body message carrying every piece in ``ready`` (which it empties)."""
    piece = ready[0] if len(ready) == 1 else b"".join(ready)
    ready.clear()
    return {"type": "http.response.body", "body": piece, "more_body": True}


class _Resume:
    """Await the rest of a coroutine step that was started by hand and is suspended on ``signal``.

    Whatever the task is woken with (a value, a cancellation) is handed on to
    the step, exactly as ``await`` would have.
    """

    __slots__ = ("_step", "_signal", "_error")

    def __init__(self, step: Any, signal: Any, error: BaseException | None = None) -> None:
        self._step = step
        self._signal = signal
        self._error = error  # to throw into the step first

    def __await__(self) -> Generator[Any, Any, Any]:
        step, signal = self._step, self._signal
        if self._error is not None:
            try:
                signal = step.throw(self._error)
            except StopIteration as done:
                return done.value
        while True:
            try:
                value = yield signal
            except GeneratorExit:
                step.close()
                raise
            except BaseException as exc:
                try:
                    signal = step.throw(exc)
                except StopIteration as done:
                    return done.value
                continue
            try:
                signal = step.send(value)
            except StopIteration as done:
                return done.value

    def close(self) -> None:
        self._step.close()


def late_error(exc: Exception, stream: str) -> ThriftyError:
    """An error after a stream's first byte, logged, as the error event the client is sent."""
    if isinstance(exc, ThriftyError):
        log.warning("%s stream failed after the first byte: %s", stream, exc.message)
        return exc
    log.error("%s stream failed unexpectedly after the first byte", stream, exc_info=exc)
    return ThriftyError("The gateway failed unexpectedly; the error was logged.")


async def _sse(first: Piece | None, rest: AsyncIterator[Piece], include_usage: bool) -> AsyncIterator[bytes]:
    """OpenAI's SSE framing (raw events are framed already); an error after the first
    byte becomes an error event."""
    try:
        if isinstance(first, RawEvents):
            yield first.data
        elif first is not None and (include_usage or first.get("choices")):
            yield b"data: " + orjson.dumps(first) + b"\n\n"
        async for chunk in rest:
            if isinstance(chunk, RawEvents):
                yield chunk.data
            elif chunk.get("choices") or include_usage:
                yield b"data: " + orjson.dumps(chunk) + b"\n\n"
    except Exception as exc:
        yield b"data: " + orjson.dumps(late_error(exc, "chat").to_json()) + b"\n\n"
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
    """The ASGI entry point: the model routes go straight to their handlers.

    Every other path (and the lifespan) goes through the Starlette app. The
    hot routes (``POST`` chat completions, and the other doors that end in the
    same gateway call: ``hot``) skip Starlette's middleware and router: on
    a proxy whose whole budget is a few hundred microseconds per request, those
    layers were a tenth of it. Their handlers already turn every error into
    OpenAI's JSON.
    """

    def __init__(
        self, server: Server, starlette: Starlette, hot: Mapping[str, Handler] | None = None
    ) -> None:
        self.server = server
        self.starlette = starlette
        # POST routes answered without Starlette's layers: chat completions, and what create_app adds
        self._hot: dict[str, Handler] = {path: server.chat_completions for path in _CHAT_PATHS}
        self._hot.update(hot or {})
        cors = server.gateway.config.server.cors
        self._cors: ASGIApp | None = None if cors is None else cors_middleware(self._dispatch, cors)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._cors is not None:
            await self._cors(scope, receive, send)
        else:
            await self._dispatch(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self._hot.get(scope["path"]) if scope["type"] == "http" else None
        if handler is not None and scope["method"] == "POST":
            request = Request(scope, receive)
            try:
                response = await handler(request)
            except Exception as exc:
                response = await _internal(request, exc)
            await response(scope, receive, send)
            return
        await self.starlette(scope, receive, send)

    @property
    def routes(self) -> list[BaseRoute]:
        return self.starlette.routes


_CHAT_PATHS = ("/v1/chat/completions", "/chat/completions")
Handler = Callable[[Request], Awaitable[Response]]
# Response headers a page on another origin may read (beyond the CORS-safelisted ones).
_EXPOSED = (
    "x-thrifty-model",
    "x-thrifty-request-id",
    "x-thrifty-overhead-ms",
    "x-thrifty-cache",
    "x-thrifty-route",
    "x-thrifty-usage",
    "retry-after",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
)


def cors_middleware(app: ASGIApp, cors: CorsConfig) -> ASGIApp:
    """``server.cors``: preflights answered, allowed origins echoed, others given no CORS headers."""
    from starlette.middleware.cors import CORSMiddleware

    return CORSMiddleware(
        app,
        allow_origins=list(cors.origins),
        allow_methods=list(cors.methods),
        allow_headers=list(cors.headers),
        allow_credentials=cors.credentials,
        expose_headers=list(_EXPOSED),
        max_age=cors.max_age,
    )


def create_app(
    gateway: Gateway, extra_routes: Sequence[BaseRoute] = (), *, resume_batches: bool = True
) -> App:
    """The ASGI app: OpenAI routes, the capabilities' routes, lifespan = gateway."""
    access = Access(gateway.config.server, tenancy=gateway.tenancy, key_hash=gateway.key_hash)
    server = Server(gateway, access)
    routes: list[BaseRoute] = [
        Route("/v1/chat/completions", server.chat_completions, methods=["POST"]),
        Route("/chat/completions", server.chat_completions, methods=["POST"]),
        Route("/v1/models", server.models, methods=["GET"]),
        Route("/v1/models/{model:path}", server.model, methods=["GET"]),
        Route("/v1/embeddings", server.embeddings, methods=["POST"]),
        Route("/v1/cache/purge", server.purge_cache, methods=["POST"]),
        Route("/admin/status", server.admin_status, methods=["GET"]),
        Route("/health", server.health, methods=["GET"]),
        Route("/ready", server.ready, methods=["GET"]),
    ]
    from .messages import MessagesRoutes

    messages = MessagesRoutes(server)  # Anthropic's Messages API
    routes.extend(messages.routes())
    if gateway.observer is not None:
        from ..observe.routes import build_routes

        routes.extend(build_routes(gateway.observer, access))
    from ..tasks.batch_server import BatchService
    from ..tasks.settings import parse_tasks
    from . import openapi

    config = gateway.config
    batches = BatchService(
        gateway, config.server.data_dir, parse_tasks(config), access=access, resume=resume_batches
    )
    gateway.watch(batches)  # /ready reports a batch store that cannot open
    routes.extend(batches.routes())
    from .completions import Completions
    from .responses import ResponsesService

    responses = ResponsesService(server)
    gateway.watch(responses)  # /ready reports a response store that cannot open
    completions = Completions(server)
    routes.extend(responses.routes())
    routes.extend(completions.routes())
    doors = {"/v1/responses": responses.create, "/v1/completions": completions.create}
    if gateway.tenancy is not None:
        from ..tenancy.admin import KeyAdmin
        from ..tenancy.routes import build_routes as tenancy_routes

        admin = KeyAdmin(gateway.tenancy.store, gateway.models())
        server_config = config.server
        routes.extend(
            tenancy_routes(
                admin, access, gateway.tenancy, server_config.max_body_bytes, server_config.max_json_depth
            )
        )
    from ..pool import pool_routes

    routes.extend(pool_routes(gateway, access))  # the device pool's workers and admin API
    routes.append(openapi.route(config.server, gateway.models(), pool=gateway.stack.pool is not None))
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
            await asyncio.to_thread(responses.close)  # finishes queued writes
            await gateway.aclose()

    starlette = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: _not_found, 405: _not_found, Exception: _internal},
    )
    return App(server, starlette, hot={"/v1/messages": messages.create, **doors})


def _log_start_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("loading models failed: %s", task.exception())
