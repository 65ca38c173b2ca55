"""OpenAI Responses API <-> chat completions, as pure functions.

:func:`chat_body` turns a ``POST /v1/responses`` body (plus the conversation of
a ``previous_response_id``) into a chat-completions body; :func:`response_object`
turns the chat completion into a ``response`` object; :class:`ResponseStream`
turns the stream of chat chunks into the Responses event sequence
(``response.created`` ... ``response.completed``). Item ids are derived from the
response id, so the same input always translates to the same output.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequest
from ..types import Message

Item = dict[str, Any]
Event = dict[str, Any]

# Body fields a Responses client may send that change nothing here.
_PASSED = ("temperature", "top_p", "parallel_tool_calls", "user", "seed")
_UNSUPPORTED = ("background", "conversation", "prompt")
_ROLES = ("user", "system", "developer", "assistant")


@dataclass(slots=True)
class Translated:
    """A Responses request as chat: the body to send and the conversation so far (no instructions)."""

    chat: dict[str, Any]
    conversation: list[Message]


def chat_body(body: Mapping[str, Any], history: list[Message] | None = None) -> Translated:
    """The chat-completions body for a Responses body; ``history`` is the previous response's conversation."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' is required and must be a non-empty string.", param="model")
    for key in _UNSUPPORTED:
        if body.get(key):
            raise InvalidRequest(
                f"'{key}' is not supported by this gateway.", param=key, code="unsupported_parameter"
            )
    if "input" not in body:
        raise InvalidRequest("'input' is required: a string or an array of items.", param="input")
    conversation = list(history or []) + input_messages(body["input"])
    if not conversation:
        raise InvalidRequest("'input' must not be empty.", param="input")
    messages = list(conversation)
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest("'instructions' must be a string.", param="instructions")
        if instructions:
            messages.insert(0, {"role": "system", "content": instructions})
    chat: dict[str, Any] = {"model": model, "messages": messages, **_chat_params(body)}
    return Translated(chat, conversation)


def _chat_params(body: Mapping[str, Any]) -> dict[str, Any]:
    """Everything but the messages: sampling, tools, format, stream, thrifty's options."""
    chat: dict[str, Any] = {}
    for key in _PASSED:
        if body.get(key) is not None:
            chat[key] = body[key]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    tools = body.get("tools")
    if tools:
        chat["tools"] = chat_tools(tools)
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = chat_tool_choice(body["tool_choice"])
    response_format = chat_response_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    if body.get("stream") is not None:
        chat["stream"] = body["stream"]
    if body.get("thrifty") is not None:
        chat["thrifty"] = body["thrifty"]
    return chat


def responses_param(param: str | None) -> str | None:
    """A chat field an error names, as the Responses field the client sent."""
    if param is None:
        return None
    if param in ("max_tokens", "max_completion_tokens"):
        return "max_output_tokens"
    if param == "response_format":
        return "text.format"
    if param.startswith("messages"):
        return "input"
    if param.startswith("tools[") and ".function" in param:
        return param.replace(".function", "", 1)
    return param


def _output_text(parts: list[Any], where: str) -> str:
    """A tool output given as content parts: the text of its text parts, in order."""
    texts: list[str] = []
    for j, part in enumerate(parts):
        if not isinstance(part, dict):
            raise InvalidRequest(f"'{where}[{j}]' must be an object.", param=f"{where}[{j}]")
        text = part.get("text")
        if text is not None and not isinstance(text, str):
            raise InvalidRequest(f"'{where}[{j}].text' must be a string.", param=f"{where}[{j}].text")
        texts.append(text or "")
    return "".join(texts)


def input_messages(value: Any, *, skip_unknown: bool = False) -> list[Message]:
    """``input`` (a string or an array of items) as chat messages.

    ``skip_unknown`` passes over item types chat has no place for (an upstream's own
    output kept in a conversation) rather than refusing them.
    """
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list):
        raise InvalidRequest("'input' must be a string or an array of items.", param="input")
    messages: list[Message] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"'{where}' must be an object.", param=where)
        kind = item.get("type", "message")
        if kind == "message":
            messages.append(_message(item, where))
        elif kind == "function_call":
            call = {
                "id": _text_field(item, "call_id", where),
                "type": "function",
                "function": {
                    "name": _text_field(item, "name", where),
                    "arguments": _text_field(item, "arguments", where, ""),
                },
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and not _answered(messages):
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):
                output = _output_text(output, f"{where}.output")
            if not isinstance(output, str):
                raise InvalidRequest(f"'{where}.output' must be a string.", param=f"{where}.output")
            messages.append(
                {"role": "tool", "tool_call_id": _text_field(item, "call_id", where), "content": output}
            )
        elif kind == "reasoning" or skip_unknown:
            continue  # a reasoning model's notes: nothing a chat backend can take
        else:
            raise InvalidRequest(
                f"'{where}.type' {kind!r} is not supported; use message, function_call or function_call_output.",
                param=f"{where}.type",
                code="unsupported_value",
            )
    return messages


def _answered(messages: list[Message]) -> bool:
    """Whether the last message already got its tool results (so a new call starts a new turn)."""
    return messages[-1].get("role") == "tool"


def _text_field(item: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = item.get(key, default)
    if not isinstance(value, str) or (default is None and not value):
        raise InvalidRequest(f"'{where}.{key}' is required and must be a string.", param=f"{where}.{key}")
    return value


def _message(item: Mapping[str, Any], where: str) -> Message:
    role = item.get("role")
    if role not in _ROLES:
        raise InvalidRequest(f"'{where}.role' must be one of {', '.join(_ROLES)}.", param=f"{where}.role")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise InvalidRequest(
            f"'{where}.content' must be a string or an array of parts.", param=f"{where}.content"
        )
    parts = [_part(part, f"{where}.content[{j}]") for j, part in enumerate(content)]
    if role != "user" or all(p["type"] == "text" for p in parts):
        return {"role": role, "content": "".join(p.get("text", "") for p in parts)}
    return {"role": role, "content": parts}


def _part(part: Any, where: str) -> dict[str, Any]:
    if not isinstance(part, dict):
        raise InvalidRequest(f"'{where}' must be an object.", param=where)
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        text = part.get("text")
        if not isinstance(text, str):
            raise InvalidRequest(f"'{where}.text' must be a string.", param=f"{where}.text")
        return {"type": "text", "text": text}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal", ""))}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise InvalidRequest(
                f"'{where}.image_url' must be a URL or data URL.", param=f"{where}.image_url"
            )
        image: dict[str, Any] = {"url": url}
        if isinstance(part.get("detail"), str):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    raise InvalidRequest(
        f"'{where}.type' {kind!r} is not supported; use input_text, output_text or input_image.",
        param=f"{where}.type",
        code="unsupported_value",
    )


def chat_tools(tools: Any) -> list[dict[str, Any]]:
    """Responses function tools (flat) as chat tools (nested under ``function``)."""
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be an array.", param="tools")
    out = []
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            kind = tool.get("type") if isinstance(tool, dict) else None
            raise InvalidRequest(
                f"'{where}.type' {kind!r} is not supported; only function tools are.",
                param=f"{where}.type",
                code="unsupported_value",
            )
        function: dict[str, Any] = {"name": _text_field(tool, "name", where)}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        out.append({"type": "function", "function": function})
    return out


def chat_tool_choice(choice: Any) -> Any:
    if isinstance(choice, str):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise InvalidRequest(
        "'tool_choice' must be 'auto', 'none', 'required' or {\"type\": \"function\", \"name\": ...}.",
        param="tool_choice",
    )


def chat_response_format(text: Any) -> dict[str, Any] | None:
    """``text.format`` as chat's ``response_format`` (None for plain text)."""
    if text is None:
        return None
    if not isinstance(text, dict):
        raise InvalidRequest("'text' must be an object.", param="text")
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise InvalidRequest("'text.format' must be an object.", param="text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise InvalidRequest(
                "'text.format.schema' must be a JSON schema object.", param="text.format.schema"
            )
        schema: dict[str, Any] = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        for key in ("strict", "description"):
            if fmt.get(key) is not None:
                schema[key] = fmt[key]
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidRequest(
        "'text.format.type' must be text, json_object or json_schema.", param="text.format.type"
    )


def input_items(value: Any, response_id: str) -> list[Item]:
    """A request's ``input`` as the items ``GET /v1/responses/{id}/input_items`` lists.

    ``value`` has been read by :func:`input_messages`, so its shape is known good.
    Each item gets an id derived from the response's (a client's own id is kept).
    """
    suffix = _suffix(response_id)
    if isinstance(value, str):
        return [_input_message(f"msg_{suffix}_in0", "user", value)]
    items: list[Item] = []
    for i, item in enumerate(value):
        kind = item.get("type", "message")
        if kind == "message":
            items.append(
                _input_message(item.get("id") or f"msg_{suffix}_in{i}", item["role"], item["content"])
            )
        else:
            prefix = "fc" if kind == "function_call" else "fco" if kind == "function_call_output" else "rs"
            items.append({**item, "id": item.get("id") or f"{prefix}_{suffix}_in{i}", "status": "completed"})
    return items


def _input_message(item_id: str, role: str, content: Any) -> Item:
    kind = "output_text" if role == "assistant" else "input_text"
    if isinstance(content, str):
        part: dict[str, Any] = {"type": kind, "text": content}
        if role == "assistant":
            part["annotations"] = []
        content = [part]
    return {"type": "message", "id": item_id, "role": role, "content": content, "status": "completed"}


# -- answers ---------------------------------------------------------------


def usage(chat_usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """Chat usage as Responses usage."""
    chat_usage = chat_usage or {}
    prompt = int(chat_usage.get("prompt_tokens") or 0)
    completion = int(chat_usage.get("completion_tokens") or 0)
    cached = int((chat_usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    reasoning = int((chat_usage.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0)
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def envelope(body: Mapping[str, Any], response_id: str, created_at: int, status: str) -> dict[str, Any]:
    """The ``response`` object around its output: what the request asked for, echoed."""
    text = body.get("text") if isinstance(body.get("text"), dict) else None
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": body.get("model"),
        "output": [],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True) is not False,
        "temperature": body.get("temperature"),
        "text": {"format": (text or {}).get("format") or {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p"),
        "truncation": "disabled",
        "usage": None,
        "user": body.get("user"),
        "metadata": body.get("metadata") or {},
    }


def _suffix(response_id: str) -> str:
    return response_id.removeprefix("resp_")


def message_item(response_id: str, text: str, status: str = "completed") -> Item:
    content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
    return {
        "type": "message",
        "id": f"msg_{_suffix(response_id)}",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def call_item(
    response_id: str, index: int, call_id: str, name: str, arguments: str, status: str = "completed"
) -> Item:
    return {
        "type": "function_call",
        "id": f"fc_{_suffix(response_id)}_{index}",
        "call_id": call_id or f"call_{_suffix(response_id)}_{index}",
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def _finish(response: dict[str, Any], finish_reason: str | None) -> None:
    if finish_reason == "length":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "max_output_tokens"}
    elif finish_reason == "content_filter":
        response["status"] = "incomplete"
        response["incomplete_details"] = {"reason": "content_filter"}


def response_object(
    completion: Mapping[str, Any], body: Mapping[str, Any], response_id: str, created_at: int
) -> dict[str, Any]:
    """A chat completion as the ``response`` object answering ``body``."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    response = envelope(body, response_id, created_at, "completed")
    output: list[Item] = []
    text = message.get("content")
    if isinstance(text, str) and text:
        output.append(message_item(response_id, text))
    for i, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        output.append(
            call_item(
                response_id,
                i,
                str(call.get("id") or ""),
                str(function.get("name") or ""),
                str(function.get("arguments") or ""),
            )
        )
    if not output:
        output.append(message_item(response_id, ""))
    response["output"] = output
    response["usage"] = usage(completion.get("usage"))
    _finish(response, choice.get("finish_reason"))
    return response


def output_message(response: Mapping[str, Any]) -> Message:
    """The assistant message a response's output adds to the conversation."""
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in response.get("output") or ():
        if item.get("type") == "message":
            text.extend(
                p.get("text", "") for p in item.get("content") or () if p.get("type") == "output_text"
            )
        elif item.get("type") == "function_call":
            calls.append(
                {
                    "id": item["call_id"],
                    "type": "function",
                    "function": {"name": item["name"], "arguments": item["arguments"]},
                }
            )
    message: Message = {"role": "assistant", "content": "".join(text) if text or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


# -- streams ---------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    output_index: int
    item: Item
    arguments: list[str] = field(default_factory=list)


class ResponseStream:
    """Chat chunks in, Responses stream events out, numbered in order.

    Call :meth:`start` once, :meth:`feed` with each chunk, :meth:`finish` at
    the end; :attr:`response` is then the finished ``response`` object.
    """

    def __init__(self, body: Mapping[str, Any], response_id: str, created_at: int) -> None:
        self.response_id = response_id
        self._message_id = f"msg_{_suffix(response_id)}"
        self.response = envelope(body, response_id, created_at, "in_progress")
        self._seq = 0
        self._output: list[Item] = []
        self._text: list[str] | None = None  # the open text item's pieces
        self._text_index = -1
        self._calls: dict[int, _Call] = {}
        self._finish_reason: str | None = None
        self._usage: Mapping[str, Any] | None = None

    def _event(self, kind: str, **data: Any) -> Event:
        event = {"type": kind, "sequence_number": self._seq, **data}
        self._seq += 1
        return event

    def _snapshot(self) -> dict[str, Any]:
        return {**self.response, "output": list(self._output)}

    def start(self) -> list[Event]:
        return [
            self._event("response.created", response=self._snapshot()),
            self._event("response.in_progress", response=self._snapshot()),
        ]

    def feed(self, chunk: Mapping[str, Any]) -> list[Event]:
        events: list[Event] = []
        usage = chunk.get("usage")
        if usage:
            self._usage = usage
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if content and isinstance(content, str):
                if self._text is None:
                    events.extend(self._open_text())
                events.append(self._text_delta(content))
            calls = delta.get("tool_calls")
            if calls:
                for call in calls:
                    events.extend(self._call_delta(call))
            finish = choice.get("finish_reason")
            if finish:
                self._finish_reason = finish
        return events

    def _text_delta(self, content: str) -> Event:
        """The one event of the hot path: a piece of text (built as a literal, it runs per chunk)."""
        assert self._text is not None
        self._text.append(content)
        seq = self._seq
        self._seq = seq + 1
        return {
            "type": "response.output_text.delta",
            "sequence_number": seq,
            "item_id": self._message_id,
            "output_index": self._text_index,
            "content_index": 0,
            "delta": content,
            "logprobs": [],
        }

    def _open_text(self) -> list[Event]:
        """Start the message item the text goes in."""
        self._text = []
        self._text_index = len(self._output)
        item = message_item(self.response_id, "", status="in_progress")
        self._output.append(item)
        return [
            self._event("response.output_item.added", output_index=self._text_index, item=item),
            self._event(
                "response.content_part.added",
                item_id=self._message_id,
                output_index=self._text_index,
                content_index=0,
                part={"type": "output_text", "text": "", "annotations": []},
            ),
        ]

    def _call_delta(self, delta: Mapping[str, Any]) -> list[Event]:
        events: list[Event] = []
        index = int(delta.get("index") or 0)
        function = delta.get("function") or {}
        call = self._calls.get(index)
        if call is None:
            events.extend(self._close_text())
            item = call_item(
                self.response_id,
                index,
                str(delta.get("id") or ""),
                str(function.get("name") or ""),
                "",
                status="in_progress",
            )
            call = self._calls[index] = _Call(len(self._output), item)
            self._output.append(item)
            events.append(
                self._event("response.output_item.added", output_index=call.output_index, item=dict(item))
            )
        elif function.get("name"):
            call.item["name"] += function["name"]
        piece = function.get("arguments")
        if isinstance(piece, str) and piece:
            call.arguments.append(piece)
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=call.item["id"],
                    output_index=call.output_index,
                    delta=piece,
                )
            )
        return events

    def _close_text(self) -> list[Event]:
        if self._text is None:
            return []
        text = "".join(self._text)
        self._text = None
        index = self._text_index
        item = message_item(self.response_id, text)
        self._output[index] = item
        part = item["content"][0]
        return [
            self._event(
                "response.output_text.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[],
            ),
            self._event(
                "response.content_part.done",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=part,
            ),
            self._event("response.output_item.done", output_index=index, item=item),
        ]

    def finish(self) -> list[Event]:
        events = self._close_text()
        for call in self._calls.values():
            arguments = "".join(call.arguments)
            item = {**call.item, "arguments": arguments, "status": "completed"}
            self._output[call.output_index] = item
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=call.output_index,
                    name=item["name"],
                    arguments=arguments,
                )
            )
            events.append(self._event("response.output_item.done", output_index=call.output_index, item=item))
        self._calls = {}
        if not self._output:
            events.extend(self._open_text() + self._close_text())  # an empty answer is one empty message
        self.response = {**self._snapshot(), "status": "completed", "usage": usage(self._usage)}
        _finish(self.response, self._finish_reason)
        kind = "response.completed" if self.response["status"] == "completed" else "response.incomplete"
        events.append(self._event(kind, response=self.response))
        return events

    def failed(self, error: Mapping[str, Any]) -> list[Event]:
        """The events that end a stream the upstream broke after the first byte."""
        detail = error.get("error") or {}
        self.response = {
            **self._snapshot(),
            "status": "failed",
            "error": {
                "code": detail.get("code") or detail.get("type") or "server_error",
                "message": detail.get("message") or "The stream failed.",
            },
        }
        return [
            self._event(
                "error", code=detail.get("code"), message=detail.get("message"), param=detail.get("param")
            ),
            self._event("response.failed", response=self.response),
        ]
