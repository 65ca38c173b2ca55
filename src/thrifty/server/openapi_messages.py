"""The OpenAPI paths and schemas of the Anthropic Messages routes, as data.

thrifty's OpenAPI document (``server/openapi.py``) merges :func:`paths` (given its
``x-thrifty-*`` response headers) into its ``paths``, :func:`schemas` into
``components.schemas``, and adds the ``anthropic`` tag. Errors on these routes
use Anthropic's shape (``AnthropicError``), not OpenAI's.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

_ERRORS = {
    "400": "The body is malformed; the message names the field.",
    "401": "No API key (`x-api-key` or bearer), or one the gateway does not know.",
    "404": "No such model.",
    "413": "The body is larger than the configured limit.",
    "429": "Rate limited, or the admission queue is full.",
    "500": "The gateway failed unexpectedly; the error was logged.",
    "502": "The upstream failed or could not be reached.",
    "503": "No deployment is available.",
    "504": "The upstream did not answer in time.",
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _responses(ok: dict[str, Any], *codes: str) -> dict[str, Any]:
    out = dict(ok)
    for code in codes:
        out[code] = {"description": _ERRORS[code], "content": _json(_ref("AnthropicError"))}
    return out


def _headers() -> list[dict[str, Any]]:
    return [
        {
            "name": "x-api-key",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "The key, as the anthropic SDK sends it (`Authorization: Bearer` works too).",
        },
        {
            "name": "anthropic-version",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "Accepted and not checked.",
        },
    ]


def paths(response_headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The two operations; ``response_headers`` (name -> description) are the ``x-thrifty-*``
    headers the document declares for chat completions, which these answers carry too."""
    headers: dict[str, Any] = {
        name: {"description": text, "schema": {"type": "string"}}
        for name, text in (response_headers or {}).items()
    }
    headers["x-thrifty-model"] = {
        "description": "The deployment that answered.",
        "required": True,
        "schema": {"type": "string"},
    }
    events = {
        "oneOf": [
            {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {
                        "enum": [
                            "message_start",
                            "ping",
                            "content_block_start",
                            "content_block_delta",
                            "content_block_stop",
                            "message_delta",
                            "message_stop",
                        ]
                    }
                },
            },
            _ref("AnthropicError"),
        ]
    }
    create_ok = {
        "200": {
            "description": "The message; with `stream: true`, server-sent events named as Anthropic names them "
            "(`message_start`, `ping`, `content_block_start`, `content_block_delta`, "
            "`content_block_stop`, `message_delta`, `message_stop`; `error` if the upstream fails "
            "after the first byte).",
            "headers": headers,
            "content": {
                **_json(_ref("AnthropicMessage")),
                "text/event-stream": {"schema": {"type": "string"}, "x-thrifty-event-schema": events},
            },
        }
    }
    count_ok = {
        "200": {
            "description": "An estimate (about four characters a token).",
            "headers": {
                "x-thrifty-usage": {
                    "description": "Always `estimated`.",
                    "required": True,
                    "schema": {"const": "estimated"},
                }
            },
            "content": _json(_ref("AnthropicTokenCount")),
        }
    }
    return {
        "/v1/messages": {
            "post": {
                "operationId": "createMessage",
                "summary": "Anthropic Messages API, answered by any configured model",
                "tags": ["anthropic"],
                "parameters": _headers(),
                "requestBody": {"required": True, "content": _json(_ref("AnthropicMessageRequest"))},
                "responses": _responses(
                    create_ok, "400", "401", "404", "413", "429", "500", "502", "503", "504"
                ),
            }
        },
        "/v1/messages/count_tokens": {
            "post": {
                "operationId": "countMessageTokens",
                "summary": "Estimate a Messages prompt's input tokens",
                "tags": ["anthropic"],
                "parameters": _headers(),
                "requestBody": {"required": True, "content": _json(_ref("AnthropicCountTokensRequest"))},
                "responses": _responses(count_ok, "400", "401", "404", "413", "500"),
            }
        },
    }


def _blocks() -> dict[str, Schema]:
    """Content blocks by type, as the translation to a chat request takes them."""
    text = {
        "type": "object",
        "required": ["type", "text"],
        "properties": {
            "type": {"const": "text"},
            "text": {"type": "string"},
            "cache_control": {"type": "object"},
        },
    }
    image = {
        "type": "object",
        "required": ["type", "source"],
        "properties": {
            "type": {"const": "image"},
            "source": {
                "anyOf": [
                    {
                        "type": "object",
                        "required": ["type", "media_type", "data"],
                        "properties": {
                            "type": {"const": "base64"},
                            "media_type": {"type": "string"},
                            "data": {"type": "string"},
                        },
                    },
                    {
                        "type": "object",
                        "required": ["type", "url"],
                        "properties": {"type": {"const": "url"}, "url": {"type": "string"}},
                    },
                ]
            },
        },
    }
    tool_result = {
        "type": "object",
        "required": ["type", "tool_use_id"],
        "properties": {
            "type": {"const": "tool_result"},
            "tool_use_id": {"type": "string", "minLength": 1},
            "content": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"anyOf": [text, image]}}]},
            "is_error": {"type": "boolean"},
        },
    }
    tool_use = {
        "type": "object",
        "required": ["type", "name", "input"],
        "properties": {
            "type": {"const": "tool_use"},
            "id": {"type": "string"},
            "name": {"type": "string", "minLength": 1},
            "input": {"type": "object"},
        },
    }
    thinking = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": ["thinking", "redacted_thinking"]}},
        "description": "Accepted in assistant turns and not sent on (a model's own reasoning).",
    }
    return {
        "text": text,
        "image": image,
        "tool_result": tool_result,
        "tool_use": tool_use,
        "thinking": thinking,
    }


def _prompt() -> dict[str, Schema]:
    """The fields a Messages body and a token count share."""
    b = _blocks()
    user = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"const": "user"},
            "content": {
                "anyOf": [
                    {"type": "string"},
                    {
                        "type": "array",
                        "minItems": 1,
                        "items": {"anyOf": [b["text"], b["image"], b["tool_result"]]},
                    },
                ]
            },
        },
    }
    assistant = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"const": "assistant"},
            "content": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"anyOf": [b["text"], b["tool_use"], b["thinking"]]}},
                ]
            },
        },
    }
    tool = {
        "type": "object",
        "required": ["name", "input_schema"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "type": {"const": "custom"},
            "description": {"type": "string"},
            "input_schema": {"type": "object"},
            "cache_control": {"type": "object"},
        },
    }
    tool_choice = {
        "anyOf": [
            {
                "type": "object",
                "required": ["type"],
                "properties": {
                    "type": {"enum": ["auto", "any", "none"]},
                    "disable_parallel_tool_use": {"type": "boolean"},
                },
            },
            {
                "type": "object",
                "required": ["type", "name"],
                "properties": {
                    "type": {"const": "tool"},
                    "name": {"type": "string"},
                    "disable_parallel_tool_use": {"type": "boolean"},
                },
            },
        ]
    }
    ignored = {"description": "Accepted and not sent on."}
    return {
        "model": {"type": "string", "minLength": 1, "description": "A model group, router or fallback name."},
        "messages": {"type": "array", "minItems": 1, "items": {"anyOf": [user, assistant]}},
        "system": {"anyOf": [{"type": "string"}, {"type": "array", "items": b["text"]}]},
        "tools": {"type": "array", "items": tool},
        "tool_choice": tool_choice,
        "thrifty": {
            "type": "object",
            "description": "Per-request thrifty options, as on chat completions.",
            "properties": {"tenant": {"type": "string"}},
        },
        **{
            name: ignored
            for name in ("thinking", "service_tier", "container", "context_management", "mcp_servers")
        },
    }


def schemas(numbers: dict[str, Schema] | None = None) -> dict[str, Schema]:
    """The Messages schemas; ``numbers`` are the bounds chat completions enforce (``temperature``,
    ``top_p``), which a Messages body meets once translated."""
    numbers = numbers or {}
    prompt = _prompt()
    metadata = {"type": "object", "properties": {"user_id": {"type": "string"}}}
    block = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
    usage = {
        "type": "object",
        "required": ["input_tokens", "output_tokens"],
        "properties": {
            key: {"type": "integer", "minimum": 0}
            for key in (
                "input_tokens",
                "output_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
            )
        },
    }
    return {
        "AnthropicMessageRequest": {
            "type": "object",
            "required": ["model", "messages", "max_tokens"],
            "additionalProperties": False,
            "description": "A field thrifty does not know is a 400 naming it.",
            "properties": {
                **prompt,
                "max_tokens": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1},
                "stop_sequences": {"type": "array", "maxItems": 4, "items": {"type": "string"}},
                "stream": {"type": "boolean"},
                "temperature": numbers.get("temperature", {"type": "number"}),
                "top_p": numbers.get("top_p", {"type": "number"}),
                "top_k": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
                "metadata": metadata,
            },
        },
        "AnthropicCountTokensRequest": {
            "type": "object",
            "required": ["model", "messages"],
            "additionalProperties": False,
            "properties": {
                **prompt,
                **{name: {} for name in ("max_tokens", "stream", "temperature", "top_p", "top_k")},
                "stop_sequences": {"type": "array", "items": {"type": "string"}},
                "metadata": metadata,
            },
            "description": "A Messages body: its prompt is checked and counted, "
            "`max_tokens` and the sampling numbers are ignored.",
        },
        "AnthropicMessage": {
            "type": "object",
            "required": ["id", "type", "role", "model", "content", "stop_reason", "usage"],
            "properties": {
                "id": {"type": "string"},
                "type": {"const": "message"},
                "role": {"const": "assistant"},
                "model": {"type": "string"},
                "content": {"type": "array", "items": block},
                "stop_reason": {"enum": ["end_turn", "max_tokens", "tool_use", "refusal", "stop_sequence"]},
                "stop_sequence": {"type": ["string", "null"]},
                "usage": usage,
            },
        },
        "AnthropicTokenCount": {
            "type": "object",
            "required": ["input_tokens"],
            "properties": {"input_tokens": {"type": "integer", "minimum": 0}},
        },
        "AnthropicError": {
            "type": "object",
            "required": ["type", "error"],
            "properties": {
                "type": {"const": "error"},
                "error": {
                    "type": "object",
                    "required": ["type", "message"],
                    "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
                },
            },
        },
    }
