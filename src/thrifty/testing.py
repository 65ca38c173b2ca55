"""Test doubles that users of thrifty need too: a scripted backend.

``FakeBackend`` answers from a script (fixed text, a function of the request,
or a list of outcomes consumed in order, where an outcome may be an exception
to raise). It records every request it saw, so tests of wrappers can assert
what reached the backend.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable

from .errors import InvalidRequest
from .types import (
    ChatRequest,
    ChatResponse,
    Chunk,
    Usage,
    chunk_body,
    completion_body,
    message_text,
    usage_chunk,
)

Outcome = str | BaseException | ChatResponse
Script = str | Callable[[ChatRequest], Outcome] | Iterable[Outcome]


def count_words(text: str) -> int:
    return max(1, len(text.split()))


class FakeBackend:
    """A backend that answers from a script; for tests and examples."""

    def __init__(
        self,
        script: Script = "ok",
        *,
        name: str = "fake",
        delay: float = 0.0,
        chunk_words: int = 1,
    ) -> None:
        self.name = name
        self.delay = delay
        self.chunk_words = chunk_words
        self.requests: list[ChatRequest] = []
        self.started = False
        self.closed = False
        self._fn: Callable[[ChatRequest], Outcome] | None = None
        self._queue: list[Outcome] | None = None
        self._text: str | None = None
        if isinstance(script, str):
            self._text = script
        elif callable(script):
            self._fn = script
        else:
            self._queue = list(script)

    def _next(self, request: ChatRequest) -> Outcome:
        self.requests.append(request)
        if int(request.params.get("n") or 1) != 1:
            raise InvalidRequest(f"FakeBackend {self.name!r} returns one choice; n must be 1", param="n")
        if self._text is not None:
            return self._text
        if self._fn is not None:
            return self._fn(request)
        assert self._queue is not None
        if not self._queue:
            raise AssertionError(f"FakeBackend {self.name!r}: script exhausted")
        return self._queue.pop(0)

    def _usage(self, request: ChatRequest, text: str) -> Usage:
        prompt = sum(count_words(message_text(m)) for m in request.messages)
        return Usage(prompt_tokens=prompt, completion_tokens=count_words(text))

    async def complete(self, request: ChatRequest) -> ChatResponse:
        outcome = self._next(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(outcome, BaseException):
            raise outcome
        if isinstance(outcome, ChatResponse):
            return outcome
        usage = self._usage(request, outcome)
        request.trace.deployment = request.trace.deployment or self.name
        body = completion_body(id=request.trace.request_id, model=self.name, content=outcome, usage=usage)
        return ChatResponse(body=body, usage=usage)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        outcome = self._next(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(outcome, BaseException):
            raise outcome
        text = outcome.text if isinstance(outcome, ChatResponse) else outcome
        request.trace.deployment = request.trace.deployment or self.name
        rid = request.trace.request_id
        yield chunk_body(id=rid, model=self.name, delta={"role": "assistant", "content": ""})
        words = text.split(" ")
        for i in range(0, len(words), self.chunk_words):
            piece = " ".join(words[i : i + self.chunk_words])
            if i:
                piece = " " + piece
            yield chunk_body(id=rid, model=self.name, delta={"content": piece})
        yield chunk_body(id=rid, model=self.name, delta={}, finish_reason="stop")
        yield usage_chunk(id=rid, model=self.name, usage=self._usage(request, text))

    async def start(self) -> None:
        self.started = True

    async def aclose(self) -> None:
        self.closed = True

    def children(self) -> tuple[()]:
        """A provider calls no other backend."""
        return ()


def chat(text: str, model: str = "fake", **params: object) -> ChatRequest:
    """A one-message request, for tests."""
    return ChatRequest(model=model, messages=[{"role": "user", "content": text}], params=dict(params))
