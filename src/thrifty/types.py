"""The values that flow through every layer: a request, a response, a chunk.

Messages, tools and the response body keep OpenAI's JSON shape (plain dicts):
it is the lingua franca every provider translates from and to, and keeping it
means a proxied request is not re-encoded field by field on the hot path.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from typing import Any

Message = dict[str, Any]
Chunk = dict[str, Any]

# Generation parameters thrifty understands; anything else a client sends is
# kept in ``ChatRequest.extra`` and passed through to providers that accept it.
PARAMS = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "n",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "user",
)


# Response ids: a random per-process prefix and a counter. Unique across processes
# and restarts like a UUID, at a fraction of uuid4's cost on the hot path.
_ID_PREFIX = "chatcmpl-" + os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }
        if self.cached_tokens:
            out["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Usage:
        if not data:
            return cls()
        details = data.get("prompt_tokens_details") or {}
        return cls(
            prompt_tokens=int(data.get("prompt_tokens") or 0),
            completion_tokens=int(data.get("completion_tokens") or 0),
            cached_tokens=int(details.get("cached_tokens") or 0),
        )


@dataclass(slots=True)
class Trace:
    """What the layers learn about one request on its way through.

    Wrappers write here (which deployment answered, the route, the cache
    outcome); the server turns it into ``x-thrifty-*`` headers and the ledger
    row. ``upstream_s`` accumulates time spent waiting on upstreams so the
    gateway's own overhead is ``total - upstream_s``.
    """

    request_id: str = field(default_factory=new_request_id)
    started: float = field(default_factory=time.perf_counter)
    deployment: str = ""
    upstream_s: float = 0.0
    ttft_s: float | None = None
    attempts: int = 0
    annotations: dict[str, str] = field(default_factory=dict)
    tenant: str = ""
    api_key: str = ""

    def note(self, key: str, value: str) -> None:
        self.annotations[key] = value


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[Message]
    params: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # thrifty's own per-request options (``thrifty`` body field / x-thrifty-* headers)
    options: dict[str, Any] = field(default_factory=dict)
    trace: Trace = field(default_factory=Trace)

    def with_model(self, model: str) -> ChatRequest:
        """The same request aimed at another model; shares the trace."""
        return ChatRequest(
            model=model,
            messages=self.messages,
            params=self.params,
            stream=self.stream,
            include_usage=self.include_usage,
            extra=self.extra,
            options=self.options,
            trace=self.trace,
        )


@dataclass(slots=True)
class ChatResponse:
    """A finished chat completion in OpenAI's JSON shape, plus its usage."""

    body: dict[str, Any]
    usage: Usage = field(default_factory=Usage)

    @property
    def text(self) -> str:
        choices = self.body.get("choices") or [{}]
        content = (choices[0].get("message") or {}).get("content")
        return content if isinstance(content, str) else ""

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        choices = self.body.get("choices") or [{}]
        return list((choices[0].get("message") or {}).get("tool_calls") or [])

    @property
    def finish_reason(self) -> str | None:
        choices = self.body.get("choices") or [{}]
        reason = choices[0].get("finish_reason")
        return reason if isinstance(reason, str) else None


def completion_body(
    *,
    id: str,
    model: str,
    content: str | None,
    finish_reason: str = "stop",
    tool_calls: list[dict[str, Any]] | None = None,
    usage: Usage | None = None,
    logprobs: Any = None,
) -> dict[str, Any]:
    """Build an OpenAI ``chat.completion`` object."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "finish_reason": finish_reason,
        "logprobs": logprobs,
    }
    body: dict[str, Any] = {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }
    if usage is not None:
        body["usage"] = usage.to_json()
    return body


def chunk_body(
    *,
    id: str,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
    created: int | None = None,
) -> Chunk:
    """Build an OpenAI ``chat.completion.chunk`` object with one choice."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created if created is not None else int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


def usage_chunk(*, id: str, model: str, usage: Usage) -> Chunk:
    """The final chunk of a stream with ``include_usage``: no choices, only usage."""
    return {
        "id": id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [],
        "usage": usage.to_json(),
    }


def message_text(message: Message) -> str:
    """The text of a message whose content is a string or a list of parts."""
    content = message.get("content")
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
    return "".join(parts)
