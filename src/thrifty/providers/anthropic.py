"""Anthropic's Messages API, translated to and from OpenAI chat completions.

Pure functions do the translation (:func:`request_body`, :func:`parse_response`,
and :class:`.anthropic_stream.StreamDecoder` for streams); the
:class:`AnthropicBackend` adds HTTP through :mod:`.http`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from ..config import Deployment
from ..errors import ConfigError, InvalidRequest, UpstreamConnectionError, UpstreamError
from ..transport import HttpRequest, Transport
from ..types import ChatRequest, ChatResponse, Chunk, Message, completion_body, message_text
from .anthropic_stream import StreamDecoder, finish_reason, usage_from
from .http import (
    HttpClient,
    build_body,
    deployment_transport,
    extra_headers,
    option_mapping,
    timeouts_for,
)

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
# Fields a client may send in ``extra`` that Anthropic understands as they are.
PASSTHROUGH = ("top_k", "thinking", "metadata", "service_tier")
# Prompt caching: Anthropic caches nothing shorter than this (1,024 tokens for most models);
# rough tokens, 4 characters each.
MIN_CACHED_CHARS = 4 * 1024
BREAKPOINT = {"type": "ephemeral"}

# --------------------------------------------------------------------------- request


def request_body(
    request: ChatRequest, model: str, *, stream: bool, defaults: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The Messages API body for an OpenAI-shaped request; ``defaults`` fill fields it leaves unset."""
    params = request.params
    if int(params.get("n") or 1) != 1:
        raise InvalidRequest("Anthropic models return one choice; n must be 1", param="n")
    defaults = defaults or {}
    system, messages = convert_messages(request.messages)
    max_tokens = (
        params.get("max_tokens")
        or request.extra.get("max_completion_tokens")
        or defaults.get("max_tokens")
        or DEFAULT_MAX_TOKENS
    )
    body: dict[str, Any] = {"model": model, "max_tokens": int(max_tokens), "messages": messages}
    if system:
        body["system"] = system
    for key in ("temperature", "top_p"):
        if params.get(key) is not None:
            body[key] = params[key]
    stop = params.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if params.get("tools"):
        body["tools"] = [convert_tool(tool) for tool in params["tools"]]
    choice = convert_tool_choice(params.get("tool_choice"), params.get("parallel_tool_calls"))
    if choice and params.get("tools"):
        body["tool_choice"] = choice
    if params.get("user"):
        body["metadata"] = {"user_id": str(params["user"])}
    body.update({k: request.extra[k] for k in PASSTHROUGH if k in request.extra})
    for key, value in defaults.items():
        body.setdefault(key, value)
    if request.options.get("cache_breakpoints") is True:  # set by thrifty.compress's layout
        add_cache_breakpoints(body)
    if stream:
        body["stream"] = True
    return body


def add_cache_breakpoints(body: dict[str, Any]) -> None:
    """``cache_control`` on the stable prefix: the tools, the system prompt, the conversation so far.

    Anthropic reads the longest cached prefix ending at a breakpoint; the next
    turn of the conversation starts with this one's, so marking its last
    message lets the whole history be read from the cache. Nothing is marked
    when the client placed breakpoints itself, or when the prefix is too short
    for Anthropic to cache. At most 3 of the 4 breakpoints allowed are used.
    """
    tools: list[dict[str, Any]] = body.get("tools") or []
    system = body.get("system")
    blocks = [{"type": "text", "text": system}] if isinstance(system, str) else list(system or [])
    contents = [b for m in body["messages"] for b in m["content"]]
    if any("cache_control" in part for part in (*tools, *blocks, *contents)):
        return  # the client placed its own
    stable = len(orjson.dumps(tools)) + sum(len(b.get("text", "")) for b in blocks)
    if tools and stable >= MIN_CACHED_CHARS:
        tools[-1] = {**tools[-1], "cache_control": BREAKPOINT}
    if blocks and stable >= MIN_CACHED_CHARS:
        blocks[-1] = {**blocks[-1], "cache_control": BREAKPOINT}
        body["system"] = blocks
    messages = body["messages"]
    if messages and messages[-1]["content"] and stable + len(orjson.dumps(messages)) >= MIN_CACHED_CHARS:
        last = messages[-1]
        content = list(last["content"])
        content[-1] = {**content[-1], "cache_control": BREAKPOINT}
        messages[-1] = {**last, "content": content}


def convert_messages(messages: list[Message]) -> tuple[str | list[dict[str, Any]], list[dict[str, Any]]]:
    """The system prompt, and the conversation as Anthropic messages (same roles merged).

    The system prompt is plain text, or a list of text blocks when a part carries
    ``cache_control`` (Anthropic prompt caching), which is kept.
    """
    system: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(b for b in content_blocks(message.get("content")) if b.get("text"))
            continue
        if role == "tool":
            result = {
                "type": "tool_result",
                "tool_use_id": message.get("tool_call_id"),
                "content": message_text(message),
            }
            _append(out, "user", [result])
        elif role == "assistant":
            _append(out, "assistant", assistant_blocks(message))
        elif role == "user":
            _append(out, "user", content_blocks(message.get("content")))
        else:
            raise InvalidRequest(f"unknown message role {role!r}", param="messages")
    if any("cache_control" in block for block in system):
        return system, out
    return "\n\n".join(block["text"] for block in system), out


def _append(out: list[dict[str, Any]], role: str, blocks: list[dict[str, Any]]) -> None:
    if out and out[-1]["role"] == role:
        out[-1]["content"].extend(blocks)
    else:
        out.append({"role": role, "content": blocks})


def content_blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI content (a string or a list of parts) as Anthropic content blocks."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    blocks: list[dict[str, Any]] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            block = {"type": "text", "text": part.get("text", "")}
            if "cache_control" in part:
                block["cache_control"] = part["cache_control"]
            blocks.append(block)
        elif kind == "image_url":
            blocks.append(image_block(part.get("image_url") or {}))
        else:
            raise InvalidRequest(f"content parts of type {kind!r} are not supported", param="messages")
    return blocks


def image_block(image: Any) -> dict[str, Any]:
    url = image.get("url", "") if isinstance(image, dict) else str(image)
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url.removeprefix("data:").split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def assistant_blocks(message: Message) -> list[dict[str, Any]]:
    blocks = [b for b in content_blocks(message.get("content")) if b.get("type") != "text" or b["text"]]
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            tool_input = orjson.loads(arguments) if isinstance(arguments, str) else arguments
        except orjson.JSONDecodeError as exc:
            raise InvalidRequest("tool call arguments must be a JSON object", param="messages") from exc
        blocks.append(
            {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": tool_input}
        )
    return blocks


def convert_tool(tool: Any) -> dict[str, Any]:
    """An OpenAI function tool as an Anthropic tool with an ``input_schema``."""
    function = tool.get("function") if isinstance(tool, dict) else None
    if not isinstance(function, dict) or not function.get("name"):
        raise InvalidRequest(
            "each tool must be {'type': 'function', 'function': {'name': ...}}", param="tools"
        )
    out: dict[str, Any] = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    if tool.get("cache_control") is not None:
        out["cache_control"] = tool["cache_control"]  # prompt caching, as an Anthropic client sent it
    return out


def convert_tool_choice(choice: Any, parallel: Any = None) -> dict[str, Any] | None:
    if choice is None and parallel is None:
        return None
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        out: dict[str, Any] = {"type": "tool", "name": name}
    else:
        kinds = {None: "auto", "auto": "auto", "required": "any", "none": "none"}
        if choice not in kinds:
            raise InvalidRequest(f"unknown tool_choice {choice!r}", param="tool_choice")
        out = {"type": kinds[choice]}
    if parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


# --------------------------------------------------------------------------- response


def parse_response(data: Any) -> ChatResponse:
    """An Anthropic ``message`` as an OpenAI ``chat.completion``."""
    if not isinstance(data, dict) or not isinstance(data.get("content"), list):
        raise UpstreamError("the upstream's answer is not an Anthropic message")
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in data["content"]:
        if block.get("type") == "text":
            texts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
    usage = usage_from(data.get("usage"))
    body = completion_body(
        id=str(data.get("id") or ""),
        model=str(data.get("model") or ""),
        content="".join(texts) if texts or not calls else None,
        finish_reason=finish_reason(data.get("stop_reason")),
        tool_calls=calls or None,
        usage=usage,
    )
    return ChatResponse(body=body, usage=usage)


# --------------------------------------------------------------------------- backend


class AnthropicBackend:
    """A deployment reached over Anthropic's Messages API."""

    def __init__(self, deployment: Deployment, transport: Transport | None = None) -> None:
        if not deployment.api_base:
            raise ConfigError(f"deployment {deployment.name!r}: the anthropic provider needs api_base")
        self.deployment = deployment
        self.name = deployment.name
        self._url = deployment.api_base.rstrip("/") + "/messages"
        version = deployment.options.get("anthropic_version", API_VERSION)
        if not isinstance(version, str):
            raise ConfigError(f"deployment {deployment.name!r}: options.anthropic_version must be a string")
        self._headers = {"content-type": "application/json", "anthropic-version": version}
        self._headers.update(extra_headers(deployment))
        if deployment.api_key:
            self._headers["x-api-key"] = deployment.api_key
        self._defaults = option_mapping(deployment, "extra_body")  # body defaults; the request's own win
        self._timeouts = timeouts_for(deployment)
        self._http = HttpClient(transport if transport is not None else deployment_transport(deployment))

    def _request(self, request: ChatRequest, *, stream: bool) -> HttpRequest:
        body = build_body(
            self.name,
            lambda: request_body(request, self.deployment.model, stream=stream, defaults=self._defaults),
        )
        return HttpRequest(self._url, body, self._headers, self._timeouts)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        request.trace.deployment = self.name
        data = await self._http.post_json(self._request(request, stream=False), request.trace)
        return parse_response(data)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        trace = request.trace
        trace.deployment = self.name
        http_request = self._request(request, stream=True)
        decoder = StreamDecoder(id=trace.request_id, model=self.deployment.model)
        events = self._http.events(http_request, trace)
        async with contextlib.aclosing(events):
            async for event in events:
                if decoder.done:
                    continue  # read to the end so the connection can be reused
                for chunk in decoder.feed(_loads(event.data)):
                    if trace.ttft_s is None and _generated(chunk):
                        trace.ttft_s = time.perf_counter() - trace.started
                    yield chunk
        if not decoder.done and decoder.finish_reason is None:
            raise UpstreamConnectionError("the upstream closed the stream before it finished")
        yield decoder.usage_chunk()

    async def start(self) -> None:
        self._http.open()

    async def aclose(self) -> None:
        await self._http.aclose()

    def children(self) -> tuple[()]:
        """A provider calls no other backend."""
        return ()


def _generated(chunk: Chunk) -> bool:
    delta = chunk["choices"][0]["delta"]
    return bool(delta.get("content") or delta.get("tool_calls"))


def _loads(data: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("the upstream sent a stream event that is not JSON") from exc
