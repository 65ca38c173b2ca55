"""``POST /v1/messages`` and ``/v1/messages/count_tokens``: Anthropic's Messages API, inbound.

The body is translated to a chat request (:mod:`thrifty.translate.messages`)
and answered by :meth:`Gateway.complete` / :meth:`Gateway.stream`, so routing,
cache, failover, budgets and the ledger apply as they do to chat completions,
whichever backend answers. Errors on these routes use Anthropic's error shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..errors import ThriftyError
from ..translate.messages import (
    StreamEncoder,
    chat_request_from,
    count_tokens,
    error_body,
    message_body,
    message_id,
)
from ..types import ChatRequest, Chunk
from .app import JSON, Server, _DisconnectWatch, late_error

log = logging.getLogger("thrifty.server")


def anthropic_error(exc: ThriftyError) -> Response:
    return Response(
        orjson.dumps(error_body(exc)), status_code=exc.status, media_type=JSON, headers=exc.headers()
    )


def unexpected(request: Request, exc: Exception) -> Response:
    """A bug's 500, logged, in Anthropic's shape (the app-wide handler would answer OpenAI's)."""
    log.error("unexpected error on %s", request.url.path, exc_info=exc)
    return anthropic_error(ThriftyError("The gateway failed unexpectedly; the error was logged."))


class MessagesRoutes:
    """The Messages API handlers, bound to the chat-completions server's gateway and access."""

    def __init__(self, server: Server) -> None:
        self.server = server

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/v1/messages", self.create, methods=["POST"]),
            Route("/v1/messages/count_tokens", self.count_tokens, methods=["POST"]),
        ]

    async def create(self, request: Request) -> Response:
        server = self.server
        try:
            caller = await server.access.authenticate(request)
            body = await server.read_json(request)
            req = chat_request_from(body, server.header_options(request))
            trace = req.trace
            trace.api_key, trace.key_id, trace.principal = caller.key, caller.key_id, caller.principal
            trace.tenant = server.tenant(caller, req.options.get("tenant"))
            trace.user = str(req.params.get("user") or "")[:256]
            if req.stream:
                return await self._stream(req, request)
            watch = _DisconnectWatch(request.receive)
            try:
                response = await server.gateway.complete(req)
            except asyncio.CancelledError:
                if not watch.left():
                    raise
                return Response(status_code=499)
            finally:
                watch.stop()
        except ThriftyError as exc:
            return anthropic_error(exc)
        except Exception as exc:
            return unexpected(request, exc)
        answer = message_body(response.body, response.usage, id=message_id(trace.request_id), model=req.model)
        overhead = max(0.0, time.perf_counter() - trace.started - trace.upstream_s)
        return Response(orjson.dumps(answer), media_type=JSON, headers=server.response_headers(req, overhead))

    async def _stream(self, req: ChatRequest, request: Request) -> Response:
        chunks = self.server.gateway.stream(req).__aiter__()
        # As for chat completions: a failure before the first chunk is a plain HTTP error.
        watch = _DisconnectWatch(request.receive)
        try:
            first: Chunk | None = await chunks.__anext__()
        except StopAsyncIteration:
            first = None
        except asyncio.CancelledError:
            if not watch.left():
                raise
            return Response(status_code=499)
        finally:
            watch.stop()
        trace = req.trace
        overhead = max(0.0, time.perf_counter() - trace.started - trace.upstream_s)
        encoder = StreamEncoder(id=message_id(trace.request_id), model=req.model)
        return StreamingResponse(
            _events(encoder, first, chunks),
            media_type="text/event-stream",
            headers={**self.server.response_headers(req, overhead), "cache-control": "no-cache"},
        )

    async def count_tokens(self, request: Request) -> Response:
        """An estimate (about four characters a token), marked ``x-thrifty-usage: estimated``."""
        try:
            await self.server.access.authenticate(request)
            body = await self.server.read_json(request)
            model = body.get("model")
            if isinstance(model, str):
                self.server.gateway.resolve(model)  # an unknown model is a 404, as on /v1/messages
            tokens = count_tokens(body)
        except ThriftyError as exc:
            return anthropic_error(exc)
        except Exception as exc:
            return unexpected(request, exc)
        return Response(
            orjson.dumps({"input_tokens": tokens}), media_type=JSON, headers={"x-thrifty-usage": "estimated"}
        )


def _frames(events: list[tuple[str, dict[str, object]]]) -> bytes:
    """Events in SSE framing, as one write (a chat chunk often makes two or three events)."""
    return b"".join(
        b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n" for name, data in events
    )


async def _events(
    encoder: StreamEncoder, first: Chunk | None, rest: AsyncIterator[Chunk]
) -> AsyncIterator[bytes]:
    """Anthropic's SSE framing; an error after the first byte becomes an ``error`` event."""
    head = encoder.start()
    if first is not None:
        head += encoder.feed(first)
    yield _frames(head)
    try:
        async for chunk in rest:
            events = encoder.feed(chunk)
            if events:
                yield _frames(events)
    except Exception as exc:
        yield _frames([("error", error_body(late_error(exc, "messages")))])
        return
    finally:
        with contextlib.suppress(Exception):
            await rest.aclose()  # type: ignore[attr-defined]
    yield _frames(encoder.finish())
