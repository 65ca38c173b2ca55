"""``provider: pool``: a deployment answered by whichever pool worker the coordinator picks.

The backend is a provider like any other (the balancer, cache, budgets and the
ledger sit above it); underneath, the request becomes a task in Redis that a
worker leases, and the worker's answer (or its stream of chunks) comes back.
A worker that leaves mid-task is replaced by the coordinator: a plain answer
simply arrives from the new worker; a stream that already sent tokens ends with
an error, since the text so far cannot be taken back.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from ..config import Deployment
from ..errors import (
    ContextWindowExceeded,
    InvalidRequest,
    NoDeploymentAvailable,
    ThriftyError,
    UpstreamError,
    UpstreamStatusError,
)
from ..providers.openai import request_body
from ..types import ChatRequest, ChatResponse, Chunk, Usage, message_text
from .coordinator import Pool
from .matcher import Need


def need_of(request: ChatRequest, model: str) -> Need:
    """What the matcher needs to know about a request: model, size, stable prefix."""
    chars = sum(len(message_text(m)) for m in request.messages)
    most = request.params.get("max_tokens")
    prefix = None
    if len(request.messages) > 1:  # a system prompt or history: worth sending to the same worker
        first = orjson.dumps(request.messages[0])[:2048]
        prefix = hashlib.blake2b(first, digest_size=8).hexdigest()
    return Need(
        model=model,
        prompt_tokens=chars // 4 + 1,
        max_tokens=most if isinstance(most, int) else None,
        prefix=prefix,
    )


def worker_error(data: Any) -> ThriftyError:
    """A worker's ``error`` object as one of thrifty's errors, by its status."""
    message = str(data.get("message", "the pool worker failed")) if isinstance(data, dict) else str(data)
    status = data.get("status") if isinstance(data, dict) else None
    code = data.get("code") if isinstance(data, dict) else None
    if code == ContextWindowExceeded.code:
        return ContextWindowExceeded(message, param="messages")
    if status == 400:
        return InvalidRequest(message, code=code if isinstance(code, str) else None)
    if isinstance(status, int) and 400 <= status < 600:
        return UpstreamStatusError(message, upstream_status=status)
    return UpstreamError(message, code="pool_worker_error")


def usage_of(data: Any) -> Usage:
    raw = data if isinstance(data, dict) else {}
    prompt, completion = raw.get("prompt_tokens", 0), raw.get("completion_tokens", 0)
    return Usage(
        prompt_tokens=prompt if isinstance(prompt, int) else 0,
        completion_tokens=completion if isinstance(completion, int) else 0,
    )


class PoolBackend:
    """One ``provider: pool`` deployment: ``deployment.model`` is the model a worker must have."""

    def __init__(self, deployment: Deployment, pool: Pool) -> None:
        self.deployment = deployment
        self.name = deployment.name
        self.pool = pool

    async def start(self) -> None:
        return None  # the pool is started (and closed) by the stack that owns it

    async def aclose(self) -> None:
        return None

    def children(self) -> tuple[()]:
        return ()

    def status(self) -> dict[str, Any]:
        return self.pool.status()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        model = self.deployment.model
        body = request_body(request, model, stream=False)
        began = time.perf_counter()
        try:
            async for kind, data in self.pool.run(body, need_of(request, model), stream=False):
                if kind == "assigned":
                    request.trace.deployment = f"pool:{data.name}"
                elif kind == "migrated":
                    to = self.pool.workers.get(data["to"])
                    request.trace.deployment = f"pool:{to.name if to else data['to']}"
                elif kind == "response":
                    return ChatResponse(body=data, usage=usage_of(data.get("usage")))
                elif kind == "error":
                    raise worker_error(data)
                elif kind == "lost":
                    raise NoDeploymentAvailable("The pool lost the task's worker and no other could take it.")
        finally:
            request.trace.upstream_s += time.perf_counter() - began
        raise UpstreamError("The pool ended the task without an answer.", code="pool_no_answer")

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        model = self.deployment.model
        body = request_body(request, model, stream=True)
        began = time.perf_counter()
        sent = 0
        try:
            async for kind, data in self.pool.run(body, need_of(request, model), stream=True):
                if kind == "assigned":
                    request.trace.deployment = f"pool:{data.name}"
                elif kind == "chunks":
                    for chunk in data:
                        sent += 1
                        yield chunk
                elif kind == "response":  # a worker may answer a stream in one piece
                    for chunk in chunks_of(data):
                        sent += 1
                        yield chunk
                    return
                elif kind == "done":
                    for chunk in data:
                        sent += 1
                        yield chunk
                    return
                elif kind == "error":
                    raise worker_error(data)
                elif kind == "lost":
                    if sent:
                        raise UpstreamError(
                            f"The pool worker left after {sent} chunks of this stream; the answer is cut "
                            "short (a stream that has started cannot move to another worker).",
                            code="pool_worker_lost",
                        )
                    raise NoDeploymentAvailable("The pool lost the task's worker and no other could take it.")
        finally:
            request.trace.upstream_s += time.perf_counter() - began


def chunks_of(body: dict[str, Any]) -> list[Chunk]:
    """A whole answer as a stream: one content chunk, the finish, the usage."""
    from ..types import chunk_body, usage_chunk

    rid = str(body.get("id", "pool"))
    model = str(body.get("model", "pool"))
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    return [
        chunk_body(id=rid, model=model, delta={"role": "assistant", "content": message.get("content") or ""}),
        chunk_body(id=rid, model=model, delta={}, finish_reason=choice.get("finish_reason") or "stop"),
        usage_chunk(id=rid, model=model, usage=usage_of(body.get("usage"))),
    ]
