"""The OpenAPI part for the other OpenAI doors: Responses, legacy completions, one model.

Kept beside :mod:`thrifty.server.openapi`, which merges these paths and schemas
into the one document. The request schemas say exactly what the handlers take:
the contract tests send what they allow and expect no 400.
"""

from __future__ import annotations

from typing import Any

from .openapi import (
    _RESPONSE_HEADERS,
    Schema,
    _get,
    _json,
    _numbers,
    _ok,
    _option_parameters,
    _path_parameter,
    _responses,
    nullable,
    ref,
)

_TAGS = ["openai"]


def _number(name: str) -> Schema:
    return nullable(_numbers()[name])


def _input_schemas() -> dict[str, Schema]:
    text = {"type": "string"}
    name = {"type": "string", "minLength": 1}
    part = {
        "anyOf": [
            {
                "type": "object",
                "required": ["type", "text"],
                "properties": {"type": {"enum": ["input_text", "output_text"]}, "text": text},
            },
            {
                "type": "object",
                "required": ["type", "image_url"],
                "properties": {
                    "type": {"const": "input_image"},
                    "image_url": name,
                    "detail": {"enum": ["auto", "low", "high"]},
                },
            },
        ]
    }
    message = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "type": {"const": "message"},
            "role": {"enum": ["user", "system", "developer", "assistant"]},
            "content": {"anyOf": [text, {"type": "array", "items": ref("ResponseInputPart")}]},
        },
    }
    call = {
        "type": "object",
        "required": ["type", "call_id", "name", "arguments"],
        "properties": {
            "type": {"const": "function_call"},
            "call_id": name,
            "name": name,
            "arguments": text,
            "id": text,
        },
    }
    output = {
        "type": "object",
        "required": ["type", "call_id", "output"],
        "properties": {
            "type": {"const": "function_call_output"},
            "call_id": name,
            "output": {
                "anyOf": [
                    text,
                    {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["type", "text"],
                            "properties": {"type": {"const": "input_text"}, "text": text},
                        },
                    },
                ]
            },
        },
    }
    return {
        "ResponseInputPart": part,
        "ResponseInputItem": {"anyOf": [message, call, output]},
    }


def _request_schemas() -> dict[str, Schema]:
    tool = {
        "type": "object",
        "required": ["type", "name"],
        "properties": {
            "type": {"const": "function"},
            "name": {"type": "string", "minLength": 1},
            "description": {"type": "string"},
            "parameters": {"type": "object"},
            "strict": nullable({"type": "boolean"}),
        },
    }
    choice = {
        "anyOf": [
            {"enum": ["none", "auto", "required"]},
            {
                "type": "object",
                "required": ["type", "name"],
                "properties": {"type": {"const": "function"}, "name": {"type": "string"}},
            },
        ]
    }
    fmt = {
        "oneOf": [
            {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"enum": ["text", "json_object"]}},
            },
            {
                "type": "object",
                "required": ["type", "schema"],
                "properties": {
                    "type": {"const": "json_schema"},
                    "name": {"type": "string"},
                    "schema": {"type": "object"},
                    "strict": nullable({"type": "boolean"}),
                    "description": {"type": "string"},
                },
            },
        ]
    }
    responses = {
        "model": {"type": "string", "minLength": 1, "description": "A model group, router or fallback name."},
        "input": {
            "anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": ref("ResponseInputItem")}]
        },
        "instructions": nullable({"type": "string"}),
        "tools": nullable({"type": "array", "items": tool}),
        "tool_choice": nullable(choice),
        "text": nullable({"type": "object", "properties": {"format": nullable(fmt)}}),
        "max_output_tokens": _number("max_tokens"),
        "temperature": _number("temperature"),
        "top_p": _number("top_p"),
        "parallel_tool_calls": nullable({"type": "boolean"}),
        "user": nullable({"type": "string"}),
        "stream": nullable({"type": "boolean"}),
        "store": nullable(
            {
                "type": "boolean",
                "description": "Keep the response (default true) for GET and "
                "`previous_response_id`; only its key reads it.",
            }
        ),
        "previous_response_id": nullable({"type": "string", "minLength": 1}),
        "metadata": nullable({"type": "object"}),
        "thrifty": {"type": "object", "properties": {"tenant": {"type": "string"}}},
    }
    stop = nullable(
        {"anyOf": [{"type": "string"}, {"type": "array", "maxItems": 4, "items": {"type": "string"}}]}
    )
    completions = {
        "model": {"type": "string", "minLength": 1},
        "prompt": {
            "anyOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": "string"}}]
        },
        **{
            key: _number(key)
            for key in (
                "max_tokens",
                "temperature",
                "top_p",
                "seed",
                "n",
                "presence_penalty",
                "frequency_penalty",
            )
        },
        "stop": stop,
        "echo": {"type": "boolean"},
        "stream": nullable({"type": "boolean"}),
        "stream_options": nullable({"type": "object", "properties": {"include_usage": {"type": "boolean"}}}),
        "user": nullable({"type": "string"}),
        "suffix": {
            "anyOf": [{"type": "null"}, {"const": ""}],
            "description": "Not supported: empty or null.",
        },
        "best_of": {"anyOf": [{"type": "null"}, {"const": 1}]},
        "logprobs": {"anyOf": [{"type": "null"}, {"const": 0}], "description": "Not supported: 0 or null."},
        "thrifty": {"type": "object", "properties": {"tenant": {"type": "string"}}},
    }
    one_prompt = {"anyOf": [{"type": "string"}, {"type": "array", "maxItems": 1}]}
    return {
        "ResponseCreateRequest": {"type": "object", "required": ["model", "input"], "properties": responses},
        "CompletionRequest": {
            "type": "object",
            "required": ["model", "prompt"],
            "properties": completions,
            "description": "A streamed completion takes one prompt.",
            "if": {"required": ["stream"], "properties": {"stream": {"const": True}}},
            "then": {"properties": {"prompt": one_prompt}},
        },
    }


def _answer_schemas() -> dict[str, Schema]:
    text = {"type": "string"}
    integer = {"type": "integer", "minimum": 0}
    message = {
        "type": "object",
        "required": ["type", "id", "status", "role", "content"],
        "properties": {
            "type": {"const": "message"},
            "id": text,
            "status": text,
            "role": {"const": "assistant"},
            "content": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["type", "text"],
                    "properties": {"type": {"const": "output_text"}, "text": text},
                },
            },
        },
    }
    call = {
        "type": "object",
        "required": ["type", "id", "call_id", "name", "arguments", "status"],
        "properties": {
            "type": {"const": "function_call"},
            "id": text,
            "call_id": text,
            "name": text,
            "arguments": text,
            "status": text,
        },
    }
    usage = {
        "type": "object",
        "required": ["input_tokens", "output_tokens", "total_tokens"],
        "properties": {"input_tokens": integer, "output_tokens": integer, "total_tokens": integer},
    }
    completion_usage = {
        "type": "object",
        "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
        "properties": {k: integer for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
    }
    choice = {
        "type": "object",
        "required": ["text", "index", "finish_reason"],
        "properties": {
            "text": text,
            "index": {"type": "integer"},
            "finish_reason": {"type": ["string", "null"]},
        },
    }
    head = {"id": text, "object": {"const": "text_completion"}, "created": {"type": "integer"}, "model": text}
    return {
        "ResponseOutputItem": {"anyOf": [message, call]},
        "Response": {
            "type": "object",
            "required": ["id", "object", "created_at", "status", "model", "output"],
            "properties": {
                "id": text,
                "object": {"const": "response"},
                "created_at": {"type": "integer"},
                "status": {"enum": ["completed", "incomplete", "in_progress", "failed"]},
                "model": text,
                "output": {"type": "array", "items": ref("ResponseOutputItem")},
                "usage": nullable(usage),
                "previous_response_id": {"type": ["string", "null"]},
                "store": {"type": "boolean"},
            },
        },
        "ResponseStreamEvent": {
            "type": "object",
            "required": ["type", "sequence_number"],
            "properties": {
                "type": {"type": "string", "pattern": r"^(response\.|error$)"},
                "sequence_number": integer,
                "response": ref("Response"),
            },
        },
        "ResponseItem": {
            "type": "object",
            "required": ["type", "id"],
            "description": "An item of the input: a message (`input_text`, `input_image` or, for the assistant, "
            "`output_text` parts), a `function_call` or a `function_call_output`, as sent, with an id.",
            "properties": {
                "type": {"enum": ["message", "function_call", "function_call_output", "reasoning"]},
                "id": text,
                "role": text,
                "status": text,
            },
        },
        "ResponseInputItemList": {
            "type": "object",
            "required": ["object", "data", "first_id", "last_id", "has_more"],
            "properties": {
                "object": {"const": "list"},
                "data": {
                    "type": "array",
                    "items": {"anyOf": [ref("ResponseItem"), ref("ResponseOutputItem")]},
                },
                "first_id": {"type": ["string", "null"]},
                "last_id": {"type": ["string", "null"]},
                "has_more": {"type": "boolean"},
            },
        },
        "ResponseDeleted": {
            "type": "object",
            "required": ["id", "object", "deleted"],
            "properties": {"id": text, "object": {"const": "response"}, "deleted": {"const": True}},
        },
        "TextCompletion": {
            "type": "object",
            "required": ["id", "object", "created", "model", "choices"],
            "properties": {**head, "usage": completion_usage, "choices": {"type": "array", "items": choice}},
        },
        "TextCompletionChunk": {
            "type": "object",
            "required": ["id", "object", "created", "model", "choices"],
            "properties": {**head, "usage": completion_usage, "choices": {"type": "array", "items": choice}},
        },
        "Model": {
            "type": "object",
            "required": ["id", "object", "created", "owned_by"],
            "properties": {
                "id": text,
                "object": {"const": "model"},
                "created": {"type": "integer"},
                "owned_by": text,
            },
        },
    }


def schemas() -> dict[str, Schema]:
    out: dict[str, Schema] = {}
    for part in (_input_schemas(), _request_schemas(), _answer_schemas()):
        if out.keys() & part.keys():  # one name, two schemas: the second would silently win
            raise ValueError(f"schema names used twice: {sorted(out.keys() & part.keys())}")
        out.update(part)
    return out


def _answer(schema: Schema, events: Schema, description: str, *, done: bool) -> dict[str, Any]:
    return {
        "200": {
            "description": description,
            "headers": {
                name: {
                    "description": text,
                    "schema": {"type": "string"},
                    **({"required": True} if name == "x-thrifty-model" else {}),
                }
                for name, text in _RESPONSE_HEADERS.items()
            },
            "content": {
                **_json(schema),
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "x-thrifty-event-schema": events,
                    "x-thrifty-stream-done": done,
                },
            },
        }
    }


def _page_parameters() -> list[dict[str, Any]]:
    def query(name: str, description: str, schema: Schema) -> dict[str, Any]:
        return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}

    return [
        query(
            "after",
            "An item id: list the items after it (in `order`); an id not in the list gives an empty page.",
            {"type": "string"},
        ),
        query(
            "limit",
            "How many items, 1 to 100.",
            {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
        ),
        query("order", "`asc` (oldest first) or `desc`.", {"enum": ["asc", "desc"], "default": "desc"}),
        query(
            "include",
            "Accepted and ignored: every item is listed whole.",
            {"type": "array", "items": {"type": "string"}},
        ),
    ]


def paths() -> dict[str, Any]:
    response_id = [_path_parameter("response_id", "A response id (`resp_...`).")]
    stored = _responses(_ok(ref("Response")), "404", "503")
    created = _answer(
        ref("Response"),
        ref("ResponseStreamEvent"),
        "The response; with `stream: true`, server-sent events (`event:` and `data:` lines): "
        "`response.created`, `response.in_progress`, then per output item `response.output_item.added`, its "
        "deltas and `response.output_item.done`, and `response.completed` (or `response.incomplete`) with "
        "usage; `error` and `response.failed` if the upstream fails after the first byte. No `[DONE]`.",
        done=False,
    )
    completion = _answer(
        ref("TextCompletion"),
        {"oneOf": [ref("TextCompletionChunk"), ref("Error")]},
        "The completion; with `stream: true`, `data:` lines of `TextCompletionChunk`, then `data: [DONE]`.",
        done=True,
    )
    return {
        "/v1/responses": {
            "post": {
                "operationId": "createResponse",
                "summary": "Responses API (answered as chat by any backend)",
                "tags": _TAGS,
                "parameters": _option_parameters(),
                "requestBody": {"required": True, "content": _json(ref("ResponseCreateRequest"))},
                "responses": _responses(created, "400", "404", "413", "429", "502", "503", "504"),
            }
        },
        "/v1/responses/{response_id}": {
            "get": {
                "operationId": "getResponse",
                "summary": "A stored response (the caller's own)",
                "tags": _TAGS,
                "parameters": response_id,
                "responses": stored,
            },
            "delete": {
                "operationId": "deleteResponse",
                "summary": "Forget a stored response",
                "tags": _TAGS,
                "parameters": response_id,
                "responses": _responses(_ok(ref("ResponseDeleted")), "404", "503"),
            },
        },
        "/v1/responses/{response_id}/input_items": {
            "get": {
                "operationId": "listResponseInputItems",
                "summary": "The input items of a stored response (the caller's own)",
                "description": "The items the response was made from: those of the conversation its "
                "`previous_response_id` continued (their inputs and outputs), then its own `input`.",
                "tags": _TAGS,
                "parameters": [*response_id, *_page_parameters()],
                "responses": _responses(_ok(ref("ResponseInputItemList")), "400", "404", "503"),
            }
        },
        "/v1/completions": {
            "post": {
                "operationId": "createCompletion",
                "summary": "Legacy text completion (answered as chat)",
                "tags": _TAGS,
                "parameters": _option_parameters(),
                "requestBody": {"required": True, "content": _json(ref("CompletionRequest"))},
                "responses": _responses(completion, "400", "404", "413", "429", "502", "503", "504"),
            }
        },
        "/v1/models/{model}": _get(
            "getModel",
            "One model this gateway serves",
            _ok(ref("Model")),
            "404",
            tags=tuple(_TAGS),
            parameters=[_path_parameter("model", "A model group, router or fallback name.")],
        ),
    }
