"""A cached answer: stored as bytes, replayed as a response or as a stream."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..types import ChatRequest, ChatResponse, Chunk, Usage, chunk_body, usage_chunk


@dataclass(slots=True)
class CachedAnswer:
    """The body of a finished chat completion and the usage it cost upstream."""

    body: dict[str, Any]
    usage: Usage

    def dumps(self) -> bytes:
        return orjson.dumps({"body": self.body, "usage": self.usage.to_json()})

    @classmethod
    def loads(cls, raw: bytes) -> CachedAnswer:
        data = orjson.loads(raw)
        return cls(body=data["body"], usage=Usage.from_json(data["usage"]))

    def _served_usage(self) -> Usage:
        # The whole prompt was served from the cache: nothing was paid upstream.
        prompt = self.usage.prompt_tokens
        return Usage(
            prompt_tokens=prompt, completion_tokens=self.usage.completion_tokens, cached_tokens=prompt
        )

    def response(self, request: ChatRequest) -> ChatResponse:
        """The answer as a response to ``request`` (its id, now, cached usage); takes over ``body``."""
        body = self.body
        usage = self._served_usage()
        body["id"] = request.trace.request_id
        body["created"] = int(time.time())
        body["usage"] = usage.to_json()
        return ChatResponse(body=body, usage=usage)

    def chunks(self, request: ChatRequest) -> Iterator[Chunk]:
        """The answer replayed as a stream: role, content, tool calls, finish, usage."""
        rid, model = request.trace.request_id, str(self.body.get("model", request.model))
        choice = (self.body.get("choices") or [{}])[0]
        message = choice.get("message") or {}
        yield chunk_body(id=rid, model=model, delta={"role": "assistant", "content": ""})
        content = message.get("content")
        if content:
            yield chunk_body(id=rid, model=model, delta={"content": content})
        calls = message.get("tool_calls") or []
        if calls:
            delta = [{"index": i, **copy.deepcopy(call)} for i, call in enumerate(calls)]
            yield chunk_body(id=rid, model=model, delta={"tool_calls": delta})
        yield chunk_body(id=rid, model=model, delta={}, finish_reason=choice.get("finish_reason") or "stop")
        yield usage_chunk(id=rid, model=model, usage=self._served_usage())


@dataclass
class StreamRecorder:
    """Rebuilds a whole answer from the chunks of a stream as they pass by."""

    model: str = ""
    content: list[str] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None
    usage: Usage | None = None

    def add(self, chunk: Chunk) -> None:
        self.model = self.model or str(chunk.get("model") or "")
        if chunk.get("usage"):
            self.usage = Usage.from_json(chunk["usage"])
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self.content.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                self._add_call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]

    def _add_call(self, delta: dict[str, Any]) -> None:
        call = self.calls.setdefault(
            int(delta.get("index", len(self.calls))),
            {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
        )
        if delta.get("id"):
            call["id"] = delta["id"]
        function = delta.get("function") or {}
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""

    def answer(self) -> CachedAnswer | None:
        """The whole answer, or None when the stream did not finish properly."""
        if self.finish_reason is None or self.usage is None:
            return None
        message: dict[str, Any] = {"role": "assistant", "content": "".join(self.content) or None}
        if self.calls:
            message["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
        body = {
            "id": "",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {"index": 0, "message": message, "finish_reason": self.finish_reason, "logprobs": None}
            ],
        }
        return CachedAnswer(body=body, usage=self.usage)


def answer_of(response: ChatResponse) -> CachedAnswer | None:
    """The cacheable part of a response, or None when it is not a whole answer."""
    if response.finish_reason is None:
        return None
    return CachedAnswer(body=response.body, usage=response.usage)
