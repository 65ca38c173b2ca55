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
        {"name": "x-api-key", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "The key, as the anthropic SDK sends it (`Authorization: Bearer` works too)."},
        {"name": "anthropic-version", "in": "header", "required": False, "schema": {"type": "string"},
         "description": "Accepted and not checked."},
    ]


def paths(response_headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The two operations; ``response_headers`` (name -> description) are the ``x-thrifty-*``
    headers the document declares for chat completions, which these answers carry too."""
    headers: dict[str, Any] = {name: {"description": text, "schema": {"type": "string"}}
               for name, text in (response_headers or {}).items()}
    headers["x-thrifty-model"] = {"description": "The deployment that answered.", "required": True,
                                  "schema": {"type": "string"}}
    events = {"oneOf": [{"type": "object", "required": ["type"], "properties": {"type": {"enum": [
        "message_start", "ping", "content_block_start", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop"]}}}, _ref("AnthropicError")]}
    create_ok = {"200": {
        "description": "The message; with `stream: true`, server-sent events named as Anthropic names them "
                       "(`message_start`, `ping`, `content_block_start`, `content_block_delta`, "
                       "`content_block_stop`, `message_delta`, `message_stop`; `error` if the upstream fails "
                       "after the first byte).",
        "headers": headers,
        "content": {**_json(_ref("AnthropicMessage")),
                    "text/event-stream": {"schema": {"type": "string"}, "x-thrifty-event-schema": events}},
    }}
    count_ok = {"200": {"description": "An estimate (about four characters a token).",
                        "headers": {"x-thrifty-usage": {"description": "Always `estimated`.", "required": True,
                                                        "schema": {"const": "estimated"}}},
                        "content": _json(_ref("AnthropicTokenCount"))}}
    return {
        "/v1/messages": {"post": {
            "operationId": "createMessage", "summary": "Anthropic Messages API, answered by any configured model",
            "tags": ["anthropic"], "parameters": _headers(),
            "requestBody": {"required": True, "content": _json(_ref("AnthropicMessageRequest"))},
            "responses": _responses(create_ok, "400", "401", "404", "413", "429", "500", "502", "503", "504"),
        }},
        "/v1/messages/count_tokens": {"post": {
            "operationId": "countMessageTokens", "summary": "Estimate a Messages prompt's input tokens",
            "tags": ["anthropic"], "parameters": _headers(),
            "requestBody": {"required": True, "content": _json(_ref("AnthropicCountTokensRequest"))},
            "responses": _responses(count_ok, "400", "401", "404", "413", "500"),
        }},
    }


def schemas() -> dict[str, Schema]:
    block = {"type": "object", "required": ["type"], "properties": {
        "type": {"enum": ["text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"]}}}
    content = {"anyOf": [{"type": "string"}, {"type": "array", "items": block}]}
    message = {"type": "object", "required": ["role", "content"],
               "properties": {"role": {"enum": ["user", "assistant"]}, "content": content}}
    system = {"anyOf": [{"type": "string"}, {"type": "array", "items": block}]}
    tool = {"type": "object", "required": ["name", "input_schema"],
            "properties": {"name": {"type": "string"}, "description": {"type": "string"},
                           "input_schema": {"type": "object"}, "cache_control": {"type": "object"}}}
    prompt = {"model": {"type": "string"}, "messages": {"type": "array", "minItems": 1, "items": message},
              "system": system, "tools": {"type": "array", "items": tool},
              "tool_choice": {"type": "object", "required": ["type"],
                              "properties": {"type": {"enum": ["auto", "any", "tool", "none"]}}}}
    usage = {"type": "object", "required": ["input_tokens", "output_tokens"], "properties": {
        key: {"type": "integer", "minimum": 0} for key in (
            "input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")}}
    return {
        "AnthropicMessageRequest": {"type": "object", "required": ["model", "messages", "max_tokens"],
                                    "properties": {
                                        **prompt, "max_tokens": {"type": "integer", "minimum": 1},
                                        "stop_sequences": {"type": "array", "items": {"type": "string"}},
                                        "stream": {"type": "boolean"},
                                        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
                                        "top_p": {"type": "number"}, "top_k": {"type": "integer"},
                                        "metadata": {"type": "object",
                                                     "properties": {"user_id": {"type": "string"}}}}},
        "AnthropicCountTokensRequest": {"type": "object", "required": ["model", "messages"], "properties": prompt},
        "AnthropicMessage": {"type": "object",
                             "required": ["id", "type", "role", "model", "content", "stop_reason", "usage"],
                             "properties": {
                                 "id": {"type": "string"}, "type": {"const": "message"},
                                 "role": {"const": "assistant"}, "model": {"type": "string"},
                                 "content": {"type": "array", "items": block},
                                 "stop_reason": {"enum": ["end_turn", "max_tokens", "tool_use", "refusal",
                                                          "stop_sequence"]},
                                 "stop_sequence": {"type": ["string", "null"]}, "usage": usage}},
        "AnthropicTokenCount": {"type": "object", "required": ["input_tokens"],
                                "properties": {"input_tokens": {"type": "integer", "minimum": 0}}},
        "AnthropicError": {"type": "object", "required": ["type", "error"], "properties": {
            "type": {"const": "error"},
            "error": {"type": "object", "required": ["type", "message"],
                      "properties": {"type": {"type": "string"}, "message": {"type": "string"}}}}},
    }
