"""Anthropic's Messages API, inbound: its request as a chat request, the answer back as a message.

The reverse of :mod:`thrifty.providers.anthropic` (which speaks Messages to an
upstream). Pure functions and one small stream encoder, tested against golden
JSON in ``tests/fixtures/messages``:

- :func:`chat_body` checks a Messages body and rewrites it as a chat-completions
  body (``system`` first, ``tool_result`` blocks as ``tool`` messages,
  ``tool_use`` blocks as ``tool_calls``), so the rest of thrifty sees the one
  request shape it knows;
- :func:`message_body` turns a ``chat.completion`` into a ``message``;
- :class:`StreamEncoder` turns chat chunks into Anthropic's event sequence
  (``message_start``, ``content_block_*``, ``message_delta``, ``message_stop``);
- :func:`error_body` is Anthropic's error shape for any thrifty error.

``cache_control`` on system, text and tool blocks is kept on the chat request,
so an Anthropic upstream receives it; the cache read and write counts it
reports come back in ``usage``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import InvalidRequest, ThriftyError
from ..providers.estimate import estimate_tokens, estimate_usage
from ..types import ChatRequest, Chunk, Usage
from ..validate import chat_request

Event = tuple[str, dict[str, Any]]

# Top-level fields of a Messages body and what becomes of them.
_SAME = ("temperature", "top_p", "top_k")  # same name, same meaning
_IGNORED = ("thinking", "service_tier", "container", "context_management", "mcp_servers")
_KNOWN = {
    "model",
    "messages",
    "max_tokens",
    "system",
    "stop_sequences",
    "stream",
    "tools",
    "tool_choice",
    "metadata",
    "thrifty",
    *_SAME,
    *_IGNORED,
}

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# HTTP status -> Anthropic's error ``type``
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


# --------------------------------------------------------------------------- request


def chat_request_from(body: Mapping[str, Any], options: dict[str, Any] | None = None) -> ChatRequest:
    """A checked Messages body as thrifty's :class:`ChatRequest` (usage always streamed)."""
    req = chat_request(chat_body(body), options)
    req.include_usage = True
    return req


def chat_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """A Messages body as a chat-completions body; a 400 names the first field that is wrong."""
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        raise InvalidRequest(f"'{unknown[0]}' is not a Messages API field thrifty knows.", param=unknown[0])
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, float) and max_tokens.is_integer() and 1 <= max_tokens < 2**63:
        max_tokens = int(
            max_tokens
        )  # 100.0 is the integer 100, as JSON Schema (and chat completions) read it
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise InvalidRequest("'max_tokens' is required and must be an integer >= 1.", param="max_tokens")
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise InvalidRequest("'messages' is required and must be a non-empty array.", param="messages")
    messages = system_messages(body.get("system"))
    for i, message in enumerate(raw):
        messages.extend(chat_messages(message, f"messages[{i}]"))
    out: dict[str, Any] = {"model": body.get("model"), "messages": messages, "max_tokens": max_tokens}
    for key in _SAME:
        if body.get(key) is not None:
            out[key] = body[key]
    stops = _stop_sequences(body.get("stop_sequences"))
    if stops:
        out["stop"] = stops
    if "stream" in body:
        out["stream"] = body["stream"]
    if body.get("tools") is not None:
        out["tools"] = chat_tools(body["tools"])
    if body.get("tool_choice") is not None:
        out.update(chat_tool_choice(body["tool_choice"]))
    user = _user_id(body.get("metadata"))
    if user is not None:
        out["user"] = user
    if "thrifty" in body:
        out["thrifty"] = body["thrifty"]
    return out


def _stop_sequences(stops: Any) -> list[str] | None:
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise InvalidRequest("'stop_sequences' must be an array of strings.", param="stop_sequences")
    return stops


def system_messages(system: Any) -> list[dict[str, Any]]:
    """``system`` (a string or text blocks) as one system message, or none."""
    if system is None or system == "" or system == []:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    if not isinstance(system, list):
        raise InvalidRequest("'system' must be a string or an array of text blocks.", param="system")
    parts = [_text_part(block, f"system[{i}]") for i, block in enumerate(system)]
    if not any("cache_control" in part for part in parts):
        return [{"role": "system", "content": "\n\n".join(part["text"] for part in parts)}]
    return [{"role": "system", "content": parts}]


def chat_messages(message: Any, where: str) -> list[dict[str, Any]]:
    """One Messages turn as chat messages: a user turn's tool results become ``tool`` messages first."""
    if not isinstance(message, dict):
        raise InvalidRequest(f"'{where}' must be an object with 'role' and 'content'.", param=where)
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise InvalidRequest(
            f"'{where}.role' must be 'user' or 'assistant'; got {role!r}.", param=f"{where}.role"
        )
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise InvalidRequest(
            f"'{where}.content' must be a string or an array of content blocks.", param=f"{where}.content"
        )
    if role == "assistant":
        return [_assistant(content, f"{where}.content")]
    tools: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        spot = f"{where}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result":
            result, images = _tool_result(block, spot)
            tools.append(result)
            parts.extend(images)
        elif kind == "image":
            parts.append(_image_part(block, spot))
        else:
            parts.append(_text_part(block, spot))
    out = tools
    if parts:
        simple = all(p["type"] == "text" and "cache_control" not in p for p in parts)
        out.append({"role": "user", "content": "".join(p["text"] for p in parts) if simple else parts})
    return out


def _assistant(content: list[Any], where: str) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        spot = f"{where}[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_use":
            name, tool_input = block.get("name"), block.get("input", {})
            if not isinstance(name, str) or not name or not isinstance(tool_input, dict):
                raise InvalidRequest(f"'{spot}' must have a string 'name' and an object 'input'.", param=spot)
            call_id = block.get("id")
            calls.append(
                {
                    "id": call_id if isinstance(call_id, str) else _tool_id(),
                    "type": "function",
                    "function": {"name": name, "arguments": orjson.dumps(tool_input).decode()},
                }
            )
        elif kind in ("thinking", "redacted_thinking"):
            continue  # a model's own reasoning is not sent back to another model
        else:
            parts.append(_text_part(block, spot))
    message: dict[str, Any] = {"role": "assistant"}
    if any("cache_control" in p for p in parts):
        message["content"] = parts
    else:
        message["content"] = "".join(p["text"] for p in parts) if parts or not calls else None
    if calls:
        message["tool_calls"] = calls
    return message


def _text_part(block: Any, where: str) -> dict[str, Any]:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind != "text":
        allowed = "text, image, tool_use or tool_result" if "content" in where else "text"
        raise InvalidRequest(
            f"'{where}': blocks of type {kind!r} are not supported here; use {allowed}.", param=where
        )
    text = block.get("text")
    if not isinstance(text, str):
        raise InvalidRequest(f"'{where}.text' must be a string.", param=f"{where}.text")
    part: dict[str, Any] = {"type": "text", "text": text}
    if block.get("cache_control") is not None:
        part["cache_control"] = block["cache_control"]
    return part


def _image_part(block: dict[str, Any], where: str) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if isinstance(source, dict) else None
    if kind == "base64" and isinstance(source, dict):
        media, data = source.get("media_type"), source.get("data")
        if isinstance(media, str) and isinstance(data, str):
            return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if kind == "url" and isinstance(source, dict) and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise InvalidRequest(
        f"'{where}.source' must be {{type: base64, media_type, data}} or {{type: url, url}}.",
        param=f"{where}.source",
    )


def _tool_result(block: dict[str, Any], where: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A ``tool_result`` block as a ``tool`` message, and any images it held (sent after it)."""
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(f"'{where}.tool_use_id' is required.", param=f"{where}.tool_use_id")
    content = block.get("content", "")
    images: list[dict[str, Any]] = []
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for k, item in enumerate(content):
            spot = f"{where}.content[{k}]"
            if isinstance(item, dict) and item.get("type") == "image":
                images.append(_image_part(item, spot))
            else:
                texts.append(_text_part(item, spot)["text"])
        text = "\n".join(texts)
    else:
        raise InvalidRequest(
            f"'{where}.content' must be a string or an array of blocks.", param=f"{where}.content"
        )
    if block.get("is_error") is True:
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": call_id, "content": text}, images


def chat_tools(tools: Any) -> list[dict[str, Any]]:
    """Client tools (``name``, ``description``, ``input_schema``) as function tools."""
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array of tools.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            raise InvalidRequest(f"'{where}' must be an object with a string 'name'.", param=where)
        kind = tool.get("type")
        if kind not in (None, "custom"):
            raise InvalidRequest(
                f"'{where}': server tools ({kind!r}) are not supported; declare a client tool with "
                "'input_schema'.",
                param=f"{where}.type",
            )
        schema = tool.get("input_schema")
        if not isinstance(schema, dict):
            raise InvalidRequest(
                f"'{where}.input_schema' must be a JSON schema object.", param=f"{where}.input_schema"
            )
        function: dict[str, Any] = {"name": tool["name"], "parameters": schema}
        if isinstance(tool.get("description"), str):
            function["description"] = tool["description"]
        converted: dict[str, Any] = {"type": "function", "function": function}
        if tool.get("cache_control") is not None:
            converted["cache_control"] = tool["cache_control"]
        out.append(converted)
    return out


def chat_tool_choice(choice: Any) -> dict[str, Any]:
    """``tool_choice`` (auto, any, tool, none) as chat ``tool_choice`` and ``parallel_tool_calls``."""
    kind = choice.get("type") if isinstance(choice, dict) else None
    out: dict[str, Any]
    if kind == "auto":
        out = {"tool_choice": "auto"}
    elif kind == "any":
        out = {"tool_choice": "required"}
    elif kind == "none":
        return {"tool_choice": "none"}
    elif kind == "tool" and isinstance(choice, dict) and isinstance(choice.get("name"), str):
        out = {"tool_choice": {"type": "function", "function": {"name": choice["name"]}}}
    else:
        raise InvalidRequest(
            "'tool_choice' must be {type: auto | any | none} or {type: tool, name}.", param="tool_choice"
        )
    if isinstance(choice, dict) and choice.get("disable_parallel_tool_use") is True:
        out["parallel_tool_calls"] = False
    return out


def _user_id(metadata: Any) -> str | None:
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InvalidRequest("'metadata' must be an object.", param="metadata")
    user = metadata.get("user_id")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("'metadata.user_id' must be a string.", param="metadata.user_id")
    return user


def _tool_id() -> str:
    return "toolu_" + os.urandom(12).hex()


def count_tokens(body: Mapping[str, Any]) -> int:
    """An estimate of the prompt's tokens (about four characters a token), tools included."""
    checked = chat_body({**body, "max_tokens": 1})
    tokens = estimate_usage(checked["messages"], "").prompt_tokens
    if checked.get("tools"):
        tokens += estimate_tokens(orjson.dumps(checked["tools"]).decode())
    return tokens


# --------------------------------------------------------------------------- response


def usage_json(usage: Usage) -> dict[str, int]:
    """Anthropic's usage: input tokens exclude the cache reads and writes, reported apart."""
    cached, written = usage.cached_tokens, usage.cache_write_tokens
    return {
        "input_tokens": max(0, usage.prompt_tokens - cached - written),
        "output_tokens": usage.completion_tokens,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
    }


def message_id(request_id: str) -> str:
    return "msg_" + request_id.removeprefix("chatcmpl-")


def message_body(chat: Mapping[str, Any], usage: Usage, *, id: str, model: str) -> dict[str, Any]:
    """A ``chat.completion`` body as an Anthropic ``message``."""
    choices = chat.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    content: list[dict[str, Any]] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or _tool_id(),
                "name": function.get("name"),
                "input": _arguments(function.get("arguments")),
            }
        )
    return {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason"), bool(message.get("tool_calls"))),
        "stop_sequence": None,
        "usage": usage_json(usage),
    }


def stop_reason(finish: Any, called: bool = False) -> str:
    if called:
        return "tool_use"
    return STOP_REASONS.get(str(finish), "end_turn")


def _arguments(arguments: Any) -> Any:
    """Tool arguments as an object; a model's broken JSON is kept as a string under ``_raw``."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_raw": str(arguments)}
    return value if isinstance(value, dict) else {"_raw": arguments}


class StreamEncoder:
    """Chat chunks in, Anthropic stream events out, in the order the Messages API sends them."""

    def __init__(self, *, id: str, model: str) -> None:
        self.id = id
        self.model = model
        self.usage = Usage()
        self._finish: Any = None
        self._called = False
        self._blocks = 0  # content blocks opened so far
        self._open: int | None = None  # the block being written
        self._tools: dict[int, int] = {}  # chat tool-call index -> block index

    def start(self) -> list[Event]:
        message: dict[str, Any] = {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage_json(self.usage),
        }
        return [("message_start", {"type": "message_start", "message": message}), ("ping", {"type": "ping"})]

    def feed(self, chunk: Chunk) -> list[Event]:
        if chunk.get("usage"):
            self.usage = Usage.from_json(chunk["usage"])
        events: list[Event] = []
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                if self._open is None or self._open in self._tools.values():
                    events.extend(self._open_block({"type": "text", "text": ""}))
                events.append(self._delta(self._open, {"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or ():
                events.extend(self._tool_delta(call))
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return events

    def _tool_delta(self, call: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        position = call.get("index", 0)
        function = call.get("function") or {}
        if position not in self._tools:
            self._called = True
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or _tool_id(),
                "name": function.get("name") or "",
                "input": {},
            }
            events.extend(self._open_block(block))
            self._tools[position] = self._blocks - 1
        arguments = function.get("arguments")
        if arguments:
            events.append(
                self._delta(self._tools[position], {"type": "input_json_delta", "partial_json": arguments})
            )
        return events

    def _open_block(self, block: dict[str, Any]) -> list[Event]:
        events = self._close()
        self._open = self._blocks
        self._blocks += 1
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": self._open, "content_block": block},
            )
        )
        return events

    def _close(self) -> list[Event]:
        if self._open is None:
            return []
        index, self._open = self._open, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    @staticmethod
    def _delta(index: int | None, delta: dict[str, Any]) -> Event:
        return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}

    def finish(self) -> list[Event]:
        events = self._close()
        delta = {"stop_reason": stop_reason(self._finish, self._called), "stop_sequence": None}
        events.append(
            ("message_delta", {"type": "message_delta", "delta": delta, "usage": usage_json(self.usage)})
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events


def error_body(exc: ThriftyError) -> dict[str, Any]:
    """Anthropic's error shape: ``{"type": "error", "error": {"type", "message"}}``."""
    kind = ERROR_TYPES.get(exc.status, "api_error" if exc.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": exc.message}}
