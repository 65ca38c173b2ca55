"""Turn a client's JSON body into a :class:`ChatRequest`, or say exactly what is wrong.

Hand-written checks rather than a schema library: this runs on every request,
costs a few microseconds, and each message names the offending parameter the
way OpenAI's own errors do (``messages[2].content``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from .errors import InvalidRequest
from .types import PARAMS, ChatRequest

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

# name -> (types accepted, lowest, highest); None means unbounded
_NUMBERS: dict[str, tuple[tuple[type, ...], float | None, float | None]] = {
    "temperature": ((int, float), 0.0, 2.0),
    "top_p": ((int, float), 0.0, 1.0),
    "max_tokens": ((int,), 1, None),
    "max_completion_tokens": ((int,), 1, None),
    "seed": ((int,), None, None),
    "n": ((int,), 1, 1),
    "presence_penalty": ((int, float), -2.0, 2.0),
    "frequency_penalty": ((int, float), -2.0, 2.0),
    "top_logprobs": ((int,), 0, 20),
}


def parse_json(raw: bytes, max_depth: int = 100) -> dict[str, Any]:
    """A JSON object from a request body, or a 400 saying what is wrong with it.

    Nesting is bounded (``server.max_json_depth``): deeper bodies are refused
    here, as the client's error, instead of failing later when a layer
    re-serialises them for the upstream.
    """
    if not raw:
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    path = too_deep(body, max_depth)
    if path is not None:
        raise InvalidRequest(
            f"The request body nests arrays and objects more than {max_depth} levels deep.",
            param=path,
            code="json_too_deep",
        )
    return body


def too_deep(value: Any, limit: int) -> str | None:
    """The top-level key under which ``value`` nests deeper than ``limit``, else None."""
    if not isinstance(value, dict):
        value = {"": value}
    for key, top in value.items():
        todo: list[tuple[Any, int]] = [(top, 2)]
        while todo:
            item, depth = todo.pop()
            if isinstance(item, dict):
                children: Any = item.values()
            elif isinstance(item, list):
                children = item
            else:
                continue
            if depth > limit:
                return str(key)
            todo.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return None


def chat_request(body: Mapping[str, Any], options: dict[str, Any] | None = None) -> ChatRequest:
    """Validate an OpenAI chat-completions body; unknown fields pass through."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a non-empty string.", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(
            "'messages' is required and must be a non-empty array.", param="messages"
        )
    for i, message in enumerate(messages):
        _check_message(message, i)

    params: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    opts = dict(options or {})
    for key, value in body.items():
        if key in ("model", "messages", "stream", "stream_options"):
            continue
        if key == "thrifty":
            if not isinstance(value, dict):
                raise InvalidRequest("'thrifty' must be an object of thrifty options.", param="thrifty")
            opts.update(value)
        elif key in PARAMS or key in _NUMBERS:
            if value is not None:
                params[key] = _check_param(key, value)
        else:
            extra[key] = value
    if "max_completion_tokens" in params and "max_tokens" not in params:
        params["max_tokens"] = params.pop("max_completion_tokens")
    else:
        params.pop("max_completion_tokens", None)

    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be a boolean.", param="stream")
    include_usage = False
    stream_options = body.get("stream_options")
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise InvalidRequest("'stream_options' must be an object.", param="stream_options")
        include_usage = bool(stream_options.get("include_usage", False))
    return ChatRequest(
        model=model,
        messages=messages,
        params=params,
        stream=stream,
        include_usage=include_usage,
        extra=extra,
        options=opts,
    )


def _check_message(message: Any, i: int) -> None:
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise InvalidRequest(f"'{where}' must be an object with 'role' and 'content'.", param=where)
    role = message.get("role")
    if role not in ROLES:
        raise InvalidRequest(
            f"'{where}.role' must be one of {', '.join(sorted(ROLES))}; got {role!r}.",
            param=f"{where}.role",
        )
    content = message.get("content")
    if content is None:
        if role == "assistant" and message.get("tool_calls"):
            return
        raise InvalidRequest(f"'{where}.content' is required.", param=f"{where}.content")
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        raise InvalidRequest(
            f"'{where}.content' must be a string or an array of content parts.",
            param=f"{where}.content",
        )
    for j, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise InvalidRequest(
                f"'{where}.content[{j}]' must be an object with a 'type'.",
                param=f"{where}.content[{j}]",
            )
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise InvalidRequest(
                f"'{where}.content[{j}].text' must be a string.", param=f"{where}.content[{j}].text"
            )
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise InvalidRequest(
            f"'{where}.tool_call_id' is required for tool messages.", param=f"{where}.tool_call_id"
        )


def _check_param(key: str, value: Any) -> Any:
    if key in _NUMBERS:
        types, low, high = _NUMBERS[key]
        if types == (int,) and isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            value = int(value)  # 100.0 is an integer in JSON (and in /openapi.json's schema)
        if isinstance(value, bool) or not isinstance(value, types):
            kind = "an integer" if types == (int,) else "a number"
            raise InvalidRequest(f"'{key}' must be {kind}; got {value!r}.", param=key)
        number = float(value) if isinstance(value, (int, float)) else 0.0
        if (low is not None and number < low) or (high is not None and number > high):
            if key == "n":
                raise InvalidRequest("'n' must be 1: thrifty returns one choice per request.", param="n")
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise InvalidRequest(f"'{key}' must be {bounds}; got {value!r}.", param=key)
        return value
    if key == "stop":
        if isinstance(value, str):
            return value
        if isinstance(value, list) and len(value) <= 4 and all(isinstance(s, str) for s in value):
            return value
        raise InvalidRequest("'stop' must be a string or an array of up to 4 strings.", param="stop")
    if key == "tools":
        if not isinstance(value, list):
            raise InvalidRequest("'tools' must be an array of tool definitions.", param="tools")
        for i, tool in enumerate(value):
            fn = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
                raise InvalidRequest(
                    f"'tools[{i}]' must be {{'type': 'function', 'function': {{'name': ...}}}}.",
                    param=f"tools[{i}]",
                )
        return value
    if key == "response_format" and not isinstance(value, dict):
        raise InvalidRequest("'response_format' must be an object.", param="response_format")
    return value
