"""``POST /v1/completions``: legacy text completions, answered as chat by the same gateway.

Each prompt is one chat request (:mod:`thrifty.translate.completions`) through
``Gateway.complete`` or ``Gateway.stream``: routing, cache, failover, budgets
and the ledger apply as they do to chat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from ..errors import ThriftyError
from ..translate.completions import chat_bodies, completion_chunk, completion_object, prompts
from ..types import ChatRequest, Chunk
from ..validate import chat_request
from .app import JSON, ClientLeft, Server, complete_watched, error_response, first_chunk, late_error

log = logging.getLogger("thrifty.server")


class Completions:
    def __init__(self, server: Server) -> None:
        self.server = server

    def routes(self) -> list[BaseRoute]:
        return [Route("/v1/completions", self.create, methods=["POST"])]

    async def create(self, request: Request) -> Response:
        server = self.server
        try:
            caller = await server.access.authenticate(request)
            body = await server.read_json(request)
            options = server.header_options(request)
            reqs = [chat_request(chat, options) for chat in chat_bodies(body)]
            for req in reqs:
                server.attribute(req, caller, body.get("user"))
            if reqs[0].stream:
                return await self._stream(reqs[0], body, request)
            if len(reqs) == 1:
                answers = [await complete_watched(server.gateway, reqs[0], request.receive)]
            else:  # one request per prompt, side by side
                answers = await asyncio.gather(*(server.gateway.complete(r) for r in reqs))
        except ClientLeft:
            return Response(status_code=499)
        except ThriftyError as exc:
            return error_response(exc)
        req = reqs[0]
        completion = completion_object([a.body for a in answers], body, _completion_id(req), int(time.time()))
        return Response(orjson.dumps(completion), media_type=JSON, headers=server.answer_headers(req))

    async def _stream(self, req: ChatRequest, body: Mapping[str, Any], request: Request) -> Response:
        chunks = self.server.gateway.stream(req).__aiter__()
        try:
            first = await first_chunk(chunks, request.receive)
        except ClientLeft:
            return Response(status_code=499)
        headers = {**self.server.answer_headers(req), "cache-control": "no-cache"}
        echo = prompts(body)[0] if body.get("echo") else ""
        return StreamingResponse(
            _sse(first, chunks, req, echo), media_type="text/event-stream", headers=headers
        )


def _completion_id(req: ChatRequest) -> str:
    return "cmpl-" + req.trace.request_id.removeprefix("chatcmpl-")


async def _sse(
    first: Chunk | None, rest: AsyncIterator[Chunk], req: ChatRequest, echo: str
) -> AsyncIterator[bytes]:
    """Legacy completion chunks, then ``[DONE]``; an error after the first byte becomes an error event."""
    completion_id, created = _completion_id(req), int(time.time())

    def frame(chunk: Chunk) -> bytes:
        out = completion_chunk(chunk, req.model, completion_id, created)
        if out is None or (not out["choices"] and not req.include_usage):
            return b""
        return b"data: " + orjson.dumps(out) + b"\n\n"

    try:
        head = (
            [{"choices": [{"index": 0, "delta": {"content": echo}, "finish_reason": None}]}] if echo else []
        )
        if first is not None:
            head.append(first)
        data = b"".join(frame(chunk) for chunk in head)
        if data:
            yield data
        async for chunk in rest:
            data = frame(chunk)
            if data:
                yield data
    except Exception as exc:
        yield b"data: " + orjson.dumps(late_error(exc, "completions").to_json()) + b"\n\n"
    finally:
        with contextlib.suppress(Exception):
            await rest.aclose()  # type: ignore[attr-defined]
    yield b"data: [DONE]\n\n"
