"""Anthropic's streaming events, decoded into OpenAI chunks; no I/O.

Anthropic streams named events (``message_start``, ``content_block_start``,
``content_block_delta``, ``content_block_stop``, ``message_delta``,
``message_stop``, ``ping``, ``error``). :class:`StreamDecoder` keeps the little
state needed (message id, model, which content block is which tool call, the
usage so far) and turns each event into zero or more chunks.
"""

from __future__ import annotations

from typing import Any

from ..errors import RateLimited, ThriftyError, UpstreamError, UpstreamStatusError
from ..types import Chunk, Usage, chunk_body, usage_chunk
from .http import safe_text

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "pause_turn": "stop",
    "refusal": "content_filter",
}

# Anthropic error types (the ``error.type`` field) and the HTTP status each stands for.
ERROR_STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "api_error": 500,
    "overloaded_error": 529,
}


def finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(str(stop_reason), "stop")


def usage_from(data: Any) -> Usage:
    """Anthropic usage: prompt tokens include cache reads and writes, as OpenAI counts them."""
    if not isinstance(data, dict):
        return Usage()
    cached = int(data.get("cache_read_input_tokens") or 0)
    written = int(data.get("cache_creation_input_tokens") or 0)
    return Usage(
        prompt_tokens=int(data.get("input_tokens") or 0) + cached + written,
        completion_tokens=int(data.get("output_tokens") or 0),
        cached_tokens=cached,
        cache_write_tokens=written,
    )


def stream_error(data: Any) -> ThriftyError:
    """The thrifty error for an ``error`` event, chosen by Anthropic's error type."""
    error = data.get("error") if isinstance(data, dict) else None
    error = error if isinstance(error, dict) else {}
    kind = str(error.get("type") or "")
    text = error.get("message")
    message = f"upstream stream error: {safe_text(text if isinstance(text, str) else kind) or 'unknown'}"
    if kind == "rate_limit_error":
        return RateLimited(message)
    if kind in ERROR_STATUSES:
        return UpstreamStatusError(message, upstream_status=ERROR_STATUSES[kind])
    return UpstreamError(message)


class StreamDecoder:
    """Feed Anthropic stream events in order; get OpenAI chunks back."""

    def __init__(self, *, id: str = "", model: str = "") -> None:
        self.id = id
        self.model = model
        self.usage = Usage()
        self.done = False
        self.finish_reason: str | None = None
        self._tools: dict[int, int] = {}  # content block index -> tool call index
        self._with_arguments: set[int] = set()  # tool blocks that streamed some input JSON

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> Chunk:
        return chunk_body(id=self.id, model=self.model, delta=delta, finish_reason=finish)

    def feed(self, data: Any) -> list[Chunk]:
        """The chunks for one event (its JSON ``data``); raises on an ``error`` event."""
        if not isinstance(data, dict):
            raise UpstreamError("the upstream sent a malformed stream event")
        kind = data.get("type")
        if kind == "message_start":
            return self._start(data.get("message") or {})
        if kind == "content_block_start":
            return self._block_start(int(data.get("index") or 0), data.get("content_block") or {})
        if kind == "content_block_delta":
            return self._delta(int(data.get("index") or 0), data.get("delta") or {})
        if kind == "content_block_stop":
            return self._block_stop(int(data.get("index") or 0))
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "message_stop":
            self.done = True
        elif kind == "error":
            raise stream_error(data)
        return []  # ping, and event types added later

    def _start(self, message: dict[str, Any]) -> list[Chunk]:
        self.id = str(message.get("id") or self.id)
        self.model = str(message.get("model") or self.model)
        self.usage = usage_from(message.get("usage"))
        return [self._chunk({"role": "assistant", "content": ""})]

    def _block_start(self, index: int, block: dict[str, Any]) -> list[Chunk]:
        if block.get("type") == "tool_use":
            position = len(self._tools)
            self._tools[index] = position
            call = {
                "index": position,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        return []

    def _delta(self, index: int, delta: dict[str, Any]) -> list[Chunk]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [self._chunk({"content": delta.get("text") or ""})]
        if kind == "input_json_delta" and index in self._tools:
            if delta.get("partial_json"):
                self._with_arguments.add(index)
            call = {"index": self._tools[index], "function": {"arguments": delta.get("partial_json") or ""}}
            return [self._chunk({"tool_calls": [call]})]
        return []  # thinking and signature deltas are not part of the OpenAI shape

    def _block_stop(self, index: int) -> list[Chunk]:
        if index not in self._tools or index in self._with_arguments:
            return []
        # A tool called without input streams no JSON; OpenAI clients expect an object.
        call = {"index": self._tools[index], "function": {"arguments": "{}"}}
        return [self._chunk({"tool_calls": [call]})]

    def _message_delta(self, data: dict[str, Any]) -> list[Chunk]:
        usage = data.get("usage")
        if isinstance(usage, dict):
            # output_tokens is cumulative; input counts appear here only on some servers
            self.usage = usage_from({**self._raw_prompt(), **usage})
        stop = (data.get("delta") or {}).get("stop_reason")
        if stop is None:
            return []
        self.finish_reason = finish_reason(stop)
        return [self._chunk({}, self.finish_reason)]

    def _raw_prompt(self) -> dict[str, int]:
        # the prompt counts already known, in Anthropic's shape, so message_delta can override them
        usage = self.usage
        uncached = usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens
        return {
            "input_tokens": uncached,
            "cache_read_input_tokens": usage.cached_tokens,
            "cache_creation_input_tokens": usage.cache_write_tokens,
        }

    def usage_chunk(self) -> Chunk:
        return usage_chunk(id=self.id, model=self.model, usage=self.usage)
