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
    "n": ((int,), 1, 128),  # choices; backends that return one (local, Anthropic) refuse n > 1
    "presence_penalty": ((int, float), -2.0, 2.0),
    "frequency_penalty": ((int, float), -2.0, 2.0),
    "top_logprobs": ((int,), 0, 20),
}
# Integers go upstream as JSON numbers; beyond 64 bits no upstream (nor orjson) takes them.
_INT_LIMIT = 2**63
_BOOLEANS = ("parallel_tool_calls", "logprobs")
_TOOL_CHOICES = ("none", "auto", "required")


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
    # Nesting needs an opening bracket per level: a body with few brackets needs no walk.
    path = too_deep(body, max_depth) if raw.count(b"[") + raw.count(b"{") > max_depth else None
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
        raise InvalidRequest("'messages' is required and must be a non-empty array.", param="messages")
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
    if not isinstance(role, str) or role not in ROLES:
        shown = role if isinstance(role, str) else type(role).__name__
        raise InvalidRequest(
            f"'{where}.role' must be one of {', '.join(sorted(ROLES))}; got {shown!r}.",
            param=f"{where}.role",
        )
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise InvalidRequest(
            f"'{where}.tool_call_id' is required for tool messages.", param=f"{where}.tool_call_id"
        )
    name = message.get("name")
    if name is not None and not isinstance(name, str):
        raise InvalidRequest(f"'{where}.name' must be a string.", param=f"{where}.name")
    tool_calls = message.get("tool_calls")
    if tool_calls is not None:
        _check_tool_calls(tool_calls, f"{where}.tool_calls")
    content = message.get("content")
    if content is None:
        if role == "assistant" and tool_calls:
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
        _check_part(part, f"{where}.content[{j}]")


def _check_part(part: Any, where: str) -> None:
    if not isinstance(part, dict) or not isinstance(part.get("type"), str):
        raise InvalidRequest(f"'{where}' must be an object with a 'type'.", param=where)
    kind = part["type"]
    if kind == "text" and not isinstance(part.get("text"), str):
        raise InvalidRequest(f"'{where}.text' must be a string.", param=f"{where}.text")
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str):
            raise InvalidRequest(
                f"'{where}.image_url' must be an object with a string 'url'.", param=f"{where}.image_url"
            )


def _check_tool_calls(calls: Any, where: str) -> None:
    if not isinstance(calls, list):
        raise InvalidRequest(f"'{where}' must be an array of tool calls.", param=where)
    for i, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequest(
                f"'{where}[{i}]' must be {{'id': ..., 'type': 'function', 'function': {{'name': ..., "
                "'arguments': ...}}}}.",
                param=f"{where}[{i}]",
            )
        if not isinstance(fn.get("arguments", ""), str):
            raise InvalidRequest(
                f"'{where}[{i}].function.arguments' must be a string of JSON.",
                param=f"{where}[{i}].function.arguments",
            )
        if not isinstance(call.get("id", ""), str):
            raise InvalidRequest(f"'{where}[{i}].id' must be a string.", param=f"{where}[{i}].id")


def _check_param(key: str, value: Any) -> Any:
    if key in _NUMBERS:
        return _check_number(key, value)
    if key == "stop":
        if isinstance(value, str):
            return value
        if isinstance(value, list) and len(value) <= 4 and all(isinstance(s, str) for s in value):
            return value
        raise InvalidRequest("'stop' must be a string or an array of up to 4 strings.", param="stop")
    if key == "tools":
        _check_tools(value)
        return value
    if key == "tool_choice":
        if isinstance(value, str):
            ok = value in _TOOL_CHOICES
        else:
            fn = value.get("function") if isinstance(value, dict) else None
            ok = isinstance(fn, dict) and isinstance(fn.get("name"), str)
        if not ok:
            raise InvalidRequest(
                "'tool_choice' must be 'none', 'auto', 'required' or "
                "{'type': 'function', 'function': {'name': ...}}.",
                param="tool_choice",
            )
        return value
    if key in _BOOLEANS and not isinstance(value, bool):
        raise InvalidRequest(f"'{key}' must be true or false.", param=key)
    if key == "user" and not isinstance(value, str):
        raise InvalidRequest("'user' must be a string.", param="user")
    if key == "response_format" and not (isinstance(value, dict) and isinstance(value.get("type"), str)):
        raise InvalidRequest("'response_format' must be an object with a 'type'.", param="response_format")
    return value


def _check_number(key: str, value: Any) -> Any:
    types, low, high = _NUMBERS[key]
    if types == (int,) and isinstance(value, float) and value.is_integer() and abs(value) < _INT_LIMIT:
        value = int(value)  # 100.0 is an integer in JSON (and in /openapi.json's schema)
    if isinstance(value, bool) or not isinstance(value, types):
        kind = "an integer" if types == (int,) else "a number"
        raise InvalidRequest(f"'{key}' must be {kind}; got {value!r}.", param=key)
    if isinstance(value, int) and not -_INT_LIMIT <= value < _INT_LIMIT:
        raise InvalidRequest(f"'{key}' is out of range; got {value}.", param=key)
    number = float(value) if isinstance(value, (int, float)) else 0.0
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f"at least {low}" if high is None else f"between {low} and {high}"
        raise InvalidRequest(f"'{key}' must be {bounds}; got {value!r}.", param=key)
    return value


def _check_tools(tools: Any) -> None:
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array of tool definitions.", param="tools")
    for i, tool in enumerate(tools):
        fn = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise InvalidRequest(
                f"'tools[{i}]' must be {{'type': 'function', 'function': {{'name': ...}}}}.",
                param=f"tools[{i}]",
            )
        if not isinstance(fn.get("parameters", {}), dict):
            raise InvalidRequest(
                f"'tools[{i}].function.parameters' must be a JSON Schema object.",
                param=f"tools[{i}].function.parameters",
            )
        if not isinstance(fn.get("description", ""), str):
            raise InvalidRequest(
                f"'tools[{i}].function.description' must be a string.",
                param=f"tools[{i}].function.description",
            )


def encode(payload: Mapping[str, Any]) -> bytes:
    """``payload`` as JSON bytes for an upstream; a 400 naming the field that cannot be sent.

    Runs where a provider builds the upstream body, so a value orjson refuses
    (a lone surrogate, nesting past its limit, an integer beyond 64 bits, a
    type JSON lacks) is the client's error, never the deployment's.
    """
    try:
        return orjson.dumps(payload)
    except orjson.JSONEncodeError as exc:
        raise unencodable(payload, exc) from None


def check_encodable(body: Mapping[str, Any], max_depth: int = 100) -> None:
    """For bodies that did not come through :func:`parse_json` (library calls): the same bounds."""
    path = too_deep(dict(body), max_depth)
    if path is not None:
        raise InvalidRequest(
            f"The request nests arrays and objects more than {max_depth} levels deep.",
            param=path,
            code="json_too_deep",
        )
    encode(body)


_ENCODER_DEPTH = 254  # orjson writes at most 255 levels of arrays and objects


def unencodable(payload: Any, exc: Exception) -> InvalidRequest:
    """The 400 for a value that cannot be written as JSON, naming where it is."""
    deep = too_deep(payload, _ENCODER_DEPTH)
    if deep is not None:
        return InvalidRequest(
            f"'{deep}' nests arrays and objects too deep to be sent to the model.",
            param=deep,
            code="json_too_deep",
        )
    path = _unencodable_path(payload)
    where = f"'{path}'" if path else "The request"
    return InvalidRequest(
        f"{where} cannot be sent to the model: {exc}.", param=path or None, code="invalid_value"
    )


def _unencodable_path(value: Any, path: str = "", depth: int = 0) -> str:
    """The shortest path (at most a few levels) under which ``value`` stops encoding."""
    if depth >= 4:
        return path
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            return path  # orjson takes string keys only
        items: Any = ((v, f"{path}.{k}" if path else k) for k, v in value.items())
    elif isinstance(value, (list, tuple)):
        items = ((v, f"{path}[{i}]") for i, v in enumerate(value))
    else:
        return path
    for child, where in items:
        try:
            orjson.dumps(child)
        except orjson.JSONEncodeError:
            return _unencodable_path(child, where, depth + 1)
    return path
