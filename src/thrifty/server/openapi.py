"""thrifty's own OpenAPI 3.1 document, written by hand as data and served at ``/openapi.json``.

Nothing generates it from the handlers: it is the contract clients and fuzzers
read, and ``tests/server/test_openapi.py`` holds the handlers to it (every route
listed, every status and body a real request gets checked against these
schemas). The checks :mod:`thrifty.validate` makes (roles, number ranges) and
the bounds in :class:`~thrifty.config.ServerConfig` are read from where they are
enforced, so the document cannot drift from them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..config import ServerConfig
from ..observe.feedback import MAX_ANSWER, MAX_COMMENT
from ..tasks.batch_format import CHAT_URLS
from ..validate import _NUMBERS, ROLES
from . import openapi_messages, openapi_pool, openapi_tenancy
from .access import SESSION_COOKIE
from .embedding_inputs import MAX_DIMENSIONS

Schema = dict[str, Any]

VERSION = "3.1.0"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


# -- error responses ---------------------------------------------------------

_ERRORS: dict[str, tuple[str, str]] = {
    "400": (
        "BadRequest",
        "The request is malformed: bad JSON, a wrong type, a value out of range, "
        "nesting deeper than the limit. `param` names the field.",
    ),
    "401": (
        "Unauthorized",
        "No API key, one the gateway does not know, a revoked or expired virtual key "
        "(`key_revoked`, `key_expired`), or an expired dashboard session.",
    ),
    "403": (
        "Forbidden",
        "The key is valid but not allowed here (a client key on an admin route: `admin_key_required`).",
    ),
    "404": (
        "NotFound",
        "No such model, file, batch, response, key or team id, or it belongs to another "
        "key; a model a virtual key may not use (`model_not_found`).",
    ),
    "409": ("Conflict", "The object is in a state that does not allow this (a finished batch)."),
    "413": ("PayloadTooLarge", "The body is larger than the configured limit (`payload_too_large`)."),
    "429": (
        "TooManyRequests",
        "A virtual key's or its team's rate limit (`rate_limit_exceeded`) or budget "
        "(`budget_exceeded`), or the admission queue is full (`overloaded`); see "
        "`retry-after` (absent when a total budget never resets).",
    ),
    "431": ("HeadersTooLarge", "The request's headers are too large or too many."),
    "500": ("ServerError", "The gateway failed unexpectedly; the error was logged."),
    "502": ("BadGateway", "The upstream failed or could not be reached."),
    "503": (
        "Unavailable",
        "No deployment is available (all down or their breakers open: "
        "`no_deployment_available`), or a store the route needs cannot be opened "
        "(`storage_unavailable`: the batch store, the ledger, the virtual keys' database).",
    ),
    "504": (
        "GatewayTimeout",
        "The request's deadline passed (`request_timeout`: `server.request_timeout`, "
        "or less with `x-thrifty-timeout`), or the upstream did not answer in time "
        "(`upstream_timeout`).",
    ),
}

# Every operation can meet these, whatever it does.
_ALWAYS = ("431", "500")
# A secured operation checks the key; a virtual key is looked up in the keys' database, which may be away.
_SECURED = ("401", "503")


def _error_responses() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, (name, text) in _ERRORS.items():
        response: dict[str, Any] = {"description": text, "content": _json(ref("Error"))}
        if status == "429":
            response["headers"] = {
                "retry-after": {
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "string"},
                }
            }
        out[name] = response
    return out


def _responses(ok: dict[str, Any], *errors: str, secured: bool = True) -> dict[str, Any]:
    codes = set(errors) | set(_ALWAYS) | (set(_SECURED) if secured else set())
    out = dict(ok)
    for code in sorted(codes):
        out[code] = {"$ref": f"#/components/responses/{_ERRORS[code][0]}"}
    return out


def _ok(schema: Schema, description: str = "OK", **extra: Any) -> dict[str, Any]:
    return {"200": {"description": description, "content": _json(schema), **extra}}


# -- request headers and parameters ------------------------------------------

_SECONDS = r"(0\.[0-9]*[1-9][0-9]*|[1-9][0-9]{0,5}(\.[0-9]+)?)"
_CACHE_DIRECTIVE = (
    rf"(no-cache|no-store|semantic|no-semantic|ttl={_SECONDS}|namespace=[A-Za-z0-9_.-]{{1,64}})"
)

_OPTION_HEADERS: dict[str, tuple[str, Schema]] = {
    "cache": (
        "Cache directives, comma-separated (`semantic` and `no-semantic` exclude each other).",
        {"type": "string", "pattern": rf"^{_CACHE_DIRECTIVE}(, ?{_CACHE_DIRECTIVE})*$"},
    ),
    "route": ("A routing policy or tier name, for a routed model.", {"type": "string"}),
    "route-policy": ("The routing policy, for a routed model.", {"type": "string"}),
    "timeout": (
        "Seconds for this request, every retry included.",
        {"type": "string", "pattern": f"^{_SECONDS}$"},
    ),
    "session-id": ("Keeps a conversation on one replica (affinity balancing).", {"type": "string"}),
    "tenant": ("A sub-partition of the caller's cache and ledger space.", {"type": "string"}),
}

_RESPONSE_HEADERS = {
    "x-thrifty-model": "The deployment that answered.",
    "x-thrifty-overhead-ms": "Milliseconds spent in thrifty itself, upstream time excluded.",
    "x-thrifty-request-id": "The id of this request in the ledger (the completion's `id`).",
    "x-thrifty-cache": "The cache outcome, when a cache is configured.",
    "x-thrifty-cache-skip": "Why the cache was not consulted (`no-cache`, `sampled`).",
    "x-thrifty-cache-similarity": "The similarity of a semantic cache hit.",
    "x-thrifty-cache-coalesced": "Set when the answer was shared with an identical request in flight.",
    "x-thrifty-route": "The routing decision (policy, tier, score), for a routed model.",
    "x-thrifty-route-fallback": "Why a router fell back to its default tier.",
    "x-thrifty-fallback": "The fallback group that answered (`group->target`), when one did.",
    "x-thrifty-fallback_reason": "Why the fallback was taken (the error type of the group that failed).",
    "x-thrifty-retry_budget": "`exhausted` when the retry budget stopped a retry.",
    "x-thrifty-hedged": "The deployment a hedged second attempt went to.",
    "x-thrifty-usage": "`estimated` when the upstream reported no token usage.",
    "x-thrifty-agent": "The agent step this call was (`planner`, `joiner`).",
}

# OpenAI's rate-limit headers, on answers to a virtual key with rpm/tpm limits of its own.
_RATE_HEADERS = {
    "x-ratelimit-limit-requests": "The key's requests per minute.",
    "x-ratelimit-remaining-requests": "Requests left in the current minute.",
    "x-ratelimit-limit-tokens": "The key's tokens per minute.",
    "x-ratelimit-remaining-tokens": "Tokens left in the current minute (this request's worst case counted).",
}


def _option_parameters() -> list[dict[str, Any]]:
    return [
        {
            "name": f"x-thrifty-{name}",
            "in": "header",
            "required": False,
            "description": text,
            "schema": schema,
        }
        for name, (text, schema) in _OPTION_HEADERS.items()
    ]


def _path_parameter(name: str, description: str, schema: Schema | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema or {"type": "string", "minLength": 1},
    }


# -- schemas -----------------------------------------------------------------


def _chat_schemas() -> dict[str, Schema]:
    text_part = {
        "type": "object",
        "required": ["type", "text"],
        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
    }
    image_part = {
        "type": "object",
        "required": ["type", "image_url"],
        "properties": {
            "type": {"const": "image_url"},
            "image_url": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "object", "required": ["url"], "properties": {"url": {"type": "string"}}},
                ]
            },
        },
    }
    other_part = {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"type": "string", "not": {"enum": ["text", "image_url"]}}},
    }
    content = {"anyOf": [{"type": "string"}, {"type": "array", "items": ref("ContentPart")}]}
    tool_call = {
        "type": "object",
        "required": ["function"],
        "properties": {
            "id": {"type": "string"},
            "type": {"const": "function"},
            "function": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "arguments": {"type": "string", "description": "JSON, as text."},
                },
            },
        },
    }
    calls = {"type": "array", "items": ref("ToolCall")}
    plain_roles = sorted(ROLES - {"tool"})
    author = {"type": "string"}
    message = {
        "anyOf": [
            {
                "type": "object",
                "required": ["role", "content"],
                "properties": {
                    "role": {"enum": plain_roles},
                    "content": content,
                    "name": author,
                    "tool_calls": calls,
                },
            },
            {
                "type": "object",
                "required": ["role", "content", "tool_call_id"],
                "properties": {
                    "role": {"const": "tool"},
                    "content": content,
                    "tool_call_id": {"type": "string"},
                    "name": author,
                    "tool_calls": calls,
                },
            },
            {
                "type": "object",
                "required": ["role", "tool_calls"],
                "properties": {
                    "role": {"const": "assistant"},
                    "content": {"type": "null"},
                    "name": author,
                    "tool_calls": {**calls, "minItems": 1},
                },
            },
        ]
    }
    tool = {
        "type": "object",
        "required": ["function"],
        "properties": {
            "type": {"const": "function"},
            "function": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "description": {"type": "string"},
                    "parameters": {"type": "object"},
                },
            },
        },
    }
    properties: dict[str, Schema] = {
        "model": {"type": "string", "minLength": 1, "description": "A model group, router or fallback name."},
        "messages": {"type": "array", "minItems": 1, "items": ref("Message")},
        "stream": {"type": "boolean", "default": False},
        "stream_options": nullable({"type": "object", "properties": {"include_usage": {"type": "boolean"}}}),
        "stop": nullable(
            {"anyOf": [{"type": "string"}, {"type": "array", "maxItems": 4, "items": {"type": "string"}}]}
        ),
        "tools": nullable({"type": "array", "items": ref("Tool")}),
        "tool_choice": nullable(
            {
                "anyOf": [
                    {"enum": ["none", "auto", "required"]},
                    {
                        "type": "object",
                        "required": ["function"],
                        "properties": {
                            "type": {"const": "function"},
                            "function": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {"name": {"type": "string"}},
                            },
                        },
                    },
                ]
            }
        ),
        "parallel_tool_calls": nullable({"type": "boolean"}),
        "logprobs": nullable({"type": "boolean"}),
        "user": nullable({"type": "string", "description": "The end user, recorded in the ledger."}),
        "response_format": nullable(
            {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}
        ),
        "thrifty": {
            "type": "object",
            "description": "Per-request thrifty options (as the x-thrifty-* "
            "headers): cache, route, timeout, session_id, tenant.",
            "properties": {"tenant": {"type": "string"}},
        },
    }
    for name, number in _numbers().items():
        properties[name] = nullable(number)
    properties["n"]["description"] = (
        "Choices to return. Above 1 only where the model's deployments return several (OpenAI-compatible "
        "upstreams); the local model, Anthropic and the scripted fake refuse it with a 400 naming `n`."
    )
    return {
        "ContentPart": {"anyOf": [text_part, image_part, other_part]},
        "ToolCall": tool_call,
        "Message": message,
        "Tool": tool,
        "ChatCompletionRequest": {
            "type": "object",
            "required": ["model", "messages"],
            "properties": properties,
            "description": "Unknown fields pass through to the upstream.",
        },
    }


def _numbers() -> dict[str, Schema]:
    """The number parameters chat completions check, with their bounds."""
    out = {}
    for name, (types, low, high) in _NUMBERS.items():
        number: Schema = {"type": "integer" if types == (int,) else "number"}
        if types == (int,):  # validate.py refuses integers outside 64 bits
            low = -(2**63) if low is None else low
            high = 2**63 - 1 if high is None else high
        if low is not None:
            number["minimum"] = low
        if high is not None:
            number["maximum"] = high
        out[name] = number
    return out


def _chat_response_schemas() -> dict[str, Schema]:
    usage = {
        "type": "object",
        "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
        "properties": {
            k: {"type": "integer", "minimum": 0}
            for k in ("prompt_tokens", "completion_tokens", "total_tokens")
        },
    }
    answer = {
        "type": "object",
        "required": ["role"],
        "properties": {
            "role": {"const": "assistant"},
            "content": {"type": ["string", "null"]},
            "tool_calls": {"type": "array", "items": {"type": "object"}},
        },
    }
    head = {"id": {"type": "string"}, "created": {"type": "integer"}, "model": {"type": "string"}}
    completion = {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            **head,
            "object": {"const": "chat.completion"},
            "usage": ref("Usage"),
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "message"],
                    "properties": {
                        "index": {"type": "integer"},
                        "message": answer,
                        "finish_reason": {"type": ["string", "null"]},
                    },
                },
            },
        },
    }
    chunk = {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            **head,
            "object": {"const": "chat.completion.chunk"},
            "usage": nullable(ref("Usage")),
            "choices": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["index", "delta"],
                    "properties": {
                        "index": {"type": "integer"},
                        "delta": {"type": "object"},
                        "finish_reason": {"type": ["string", "null"]},
                    },
                },
            },
        },
    }
    return {
        "Usage": usage,
        "ChatCompletion": completion,
        "ChatCompletionChunk": chunk,
    }


ALERTS: Schema = {
    "type": "object",
    "required": ["alerts"],
    "properties": {
        "alerts": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["rule", "value", "threshold", "message", "subject"],
                "properties": {
                    "rule": {"type": "string"},
                    "value": {"type": "number"},
                    "threshold": {"type": "number"},
                    "message": {"type": "string"},
                    "subject": {"type": "string"},
                },
            },
        }
    },
}
READY: Schema = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"enum": ["ready", "loading", "degraded"]},
        "models": {"type": "array", "items": {"type": "string"}},
        "reasons": {
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
            "description": "When degraded: each part serving without its store, and why.",
        },
    },
}


def _openai_schemas(server: ServerConfig) -> dict[str, Schema]:
    text = {"type": "string"}
    integer = {"type": "integer"}
    maybe_text = {"type": ["string", "null"]}
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["message", "type", "param", "code"],
                    "additionalProperties": False,
                    "properties": {
                        "message": {"type": "string", "minLength": 1},
                        "type": {"type": "string", "minLength": 1},
                        "param": maybe_text,
                        "code": maybe_text,
                    },
                }
            },
        },
        "ModelList": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {
                "object": {"const": "list"},
                "data": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "object", "created", "owned_by"],
                        "properties": {
                            "id": text,
                            "object": {"const": "model"},
                            "created": integer,
                            "owned_by": text,
                        },
                    },
                },
            },
        },
        "EmbeddingRequest": _embedding_request(server),
        "EmbeddingList": {
            "type": "object",
            "required": ["object", "data", "model", "usage"],
            "properties": {
                "object": {"const": "list"},
                "model": text,
                "data": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["object", "index", "embedding"],
                        "properties": {
                            "object": {"const": "embedding"},
                            "index": integer,
                            "embedding": {
                                "anyOf": [
                                    {"type": "array", "items": {"type": "number"}},
                                    {
                                        "type": "string",
                                        "contentEncoding": "base64",
                                        "description": "With `encoding_format: "
                                        "base64`: little-endian float32.",
                                    },
                                ]
                            },
                        },
                    },
                },
                "usage": {
                    "type": "object",
                    "required": ["prompt_tokens", "total_tokens"],
                    "properties": {"prompt_tokens": integer, "total_tokens": integer},
                },
            },
        },
    }


# cl100k_base's ordinary tokens, the ids /v1/embeddings decodes (thrifty.server.embedding_inputs); of the
# special ids above them, 100257-100260 and 100276 decode too, the others are a 400
CL100K_ORDINARY = 100_256


def _embedding_request(server: ServerConfig) -> Schema:
    token = {"type": "integer", "minimum": 0, "maximum": CL100K_ORDINARY - 1}
    tokens = {"type": "array", "minItems": 1, "items": token}
    many = {"minItems": 1, "maxItems": server.max_embedding_inputs}
    return {
        "type": "object",
        "required": ["model", "input"],
        "properties": {
            "model": {"type": "string", "minLength": 1},
            "input": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", **many, "items": {"type": "string"}},
                    {
                        **tokens,
                        "description": "One input as cl100k_base token ids, decoded to text before embedding "
                        "(needs the `tokens` extra; without it a 400 `token_ids_unsupported`).",
                    },
                    {"type": "array", **many, "items": tokens, "description": "Several inputs as token ids."},
                ]
            },
            "encoding_format": nullable({"enum": ["float", "base64"], "default": "float"}),
            "dimensions": nullable(
                {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_DIMENSIONS,
                    "description": "Passed to the model; one that cannot shorten its vectors refuses it.",
                }
            ),
        },
    }


def _thrifty_schemas() -> dict[str, Schema]:
    text = {"type": "string"}
    integer = {"type": "integer"}
    maybe_text = {"type": ["string", "null"]}
    return {
        "CachePurgeRequest": {
            "type": "object",
            "required": ["namespace"],
            "properties": {"namespace": {"type": "string", "minLength": 1}},
        },
        "CachePurgeResult": {
            "type": "object",
            "required": ["namespace", "removed"],
            "properties": {"namespace": text, "removed": {"type": "integer", "minimum": 0}},
        },
        "FeedbackRequest": {
            "type": "object",
            "required": ["response_id", "rating"],
            "properties": {
                "response_id": {
                    "type": "string",
                    "pattern": r"\S",
                    "description": "The `id` of a chat completion this gateway answered.",
                },
                "rating": {"type": "integer", "minimum": 1, "maximum": 5},
                "comment": nullable({"type": "string", "maxLength": MAX_COMMENT}),
                "corrected_answer": nullable({"type": "string", "maxLength": MAX_ANSWER}),
            },
        },
        "Feedback": {
            "type": "object",
            "required": ["object", "id", "response_id", "rating"],
            "properties": {
                "object": {"const": "feedback"},
                "id": integer,
                "response_id": text,
                "ts": {"type": "number"},
                "rating": integer,
                "comment": maybe_text,
                "corrected_answer": maybe_text,
                "model": maybe_text,
                "tier": maybe_text,
                "route": maybe_text,
            },
        },
        "FeedbackList": {
            "type": "object",
            "required": ["object", "response_id", "request", "data"],
            "properties": {
                "object": {"const": "feedback.list"},
                "response_id": text,
                "request": {"type": "object"},
                "data": {"type": "array", "items": {"type": "object", "required": ["id", "rating"]}},
            },
        },
        "AlertList": ALERTS,
        "Learning": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {
                "object": {"const": "learning"},
                "data": {
                    "type": "array",
                    "items": {"type": "object"},
                    "description": "One report per learning layer.",
                },
            },
        },
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "Ready": READY,
    }


def _batch_schemas() -> dict[str, Schema]:
    text = {"type": "string"}
    integer = {"type": "integer"}
    maybe_text = {"type": ["string", "null"]}
    maybe_int = {"type": ["integer", "null"]}
    stamps = (
        "created_at",
        "expires_at",
        "in_progress_at",
        "finalizing_at",
        "completed_at",
        "failed_at",
        "expired_at",
        "cancelling_at",
        "cancelled_at",
    )
    batch_status = [
        "validating",
        "in_progress",
        "finalizing",
        "completed",
        "failed",
        "expired",
        "cancelling",
        "cancelled",
    ]
    return {
        "FileUpload": {
            "type": "object",
            "required": ["purpose", "file"],
            "properties": {
                "purpose": {"const": "batch"},
                "file": {"type": "string", "format": "binary", "description": "JSONL, one request a line."},
            },
        },
        "File": {
            "type": "object",
            "required": ["id", "object", "bytes", "created_at", "filename", "purpose"],
            "properties": {
                "id": text,
                "object": {"const": "file"},
                "bytes": integer,
                "created_at": integer,
                "filename": text,
                "purpose": {"enum": ["batch", "batch_output"]},
                "status": text,
                "expires_at": maybe_int,
                "status_details": maybe_text,
            },
        },
        "BatchRequest": {
            "type": "object",
            "required": ["input_file_id", "endpoint"],
            "properties": {
                "input_file_id": {"type": "string", "minLength": 1},
                "endpoint": {"enum": list(CHAT_URLS)},
                "completion_window": {"const": "24h", "default": "24h"},
                "metadata": nullable({"type": "object"}),
            },
        },
        "Batch": {
            "type": "object",
            "required": [
                "id",
                "object",
                "endpoint",
                "input_file_id",
                "status",
                "created_at",
                "request_counts",
            ],
            "properties": {
                "id": text,
                "object": {"const": "batch"},
                "endpoint": text,
                "input_file_id": text,
                "completion_window": text,
                "status": {"enum": batch_status},
                "errors": {"type": ["object", "null"]},
                "output_file_id": maybe_text,
                "error_file_id": maybe_text,
                "metadata": {"type": ["object", "null"]},
                **{name: maybe_int for name in stamps},
                "request_counts": {
                    "type": "object",
                    "required": ["total", "completed", "failed"],
                    "properties": {k: integer for k in ("total", "completed", "failed")},
                },
            },
        },
        "BatchList": {
            "type": "object",
            "required": ["object", "data", "first_id", "last_id", "has_more"],
            "properties": {
                "object": {"const": "list"},
                "data": {"type": "array", "items": ref("Batch")},
                "first_id": maybe_text,
                "last_id": maybe_text,
                "has_more": {"type": "boolean"},
            },
        },
    }


# -- operations --------------------------------------------------------------


def _chat_operation(alias: bool) -> dict[str, Any]:
    events = {"oneOf": [ref("ChatCompletionChunk"), ref("Error")]}
    ok = {
        "200": {
            "description": "The completion; with `stream: true`, server-sent events: one `data:` line per "
            "`ChatCompletionChunk` (an `Error` object if the upstream fails after the first byte), "
            "then `data: [DONE]`.",
            "headers": {
                name: {
                    "description": text,
                    "schema": {"type": "string"},
                    **({"required": True} if name == "x-thrifty-model" else {}),
                }
                for name, text in {**_RESPONSE_HEADERS, **_RATE_HEADERS}.items()
            },
            "content": {
                **_json(ref("ChatCompletion")),
                "text/event-stream": {"schema": {"type": "string"}, "x-thrifty-event-schema": events},
            },
        }
    }
    return {
        "post": {
            "operationId": "createChatCompletionAlias" if alias else "createChatCompletion",
            "summary": "Chat completion (the OpenAI path without /v1)" if alias else "Chat completion",
            "tags": ["openai"],
            "parameters": _option_parameters(),
            "requestBody": {"required": True, "content": _json(ref("ChatCompletionRequest"))},
            "responses": _responses(ok, "400", "404", "413", "429", "502", "503", "504"),
        }
    }


def _get(
    operation_id: str,
    summary: str,
    ok: dict[str, Any],
    *errors: str,
    secured: bool = True,
    tags: tuple[str, ...] = ("thrifty",),
    **extra: Any,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": operation_id,
        "summary": summary,
        "tags": list(tags),
        "responses": _responses(ok, *errors, secured=secured),
        **extra,
    }
    if not secured:
        op["security"] = []
    return {"get": op}


def _post(
    operation_id: str,
    summary: str,
    body: Schema,
    ok: dict[str, Any],
    *errors: str,
    tags: tuple[str, ...] = ("thrifty",),
    media: str = "application/json",
    **extra: Any,
) -> dict[str, Any]:
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "tags": list(tags),
            "requestBody": {"required": True, "content": {media: {"schema": body}}},
            "responses": _responses(ok, *errors),
            **extra,
        }
    }


def _paths() -> dict[str, Any]:
    from .openapi_doors import paths as door_paths

    messages = openapi_messages.paths({**_RESPONSE_HEADERS, **_RATE_HEADERS})
    for item in messages.values():
        for operation in item.values():
            # refused before any route is chosen: OpenAI's error shape, as everywhere
            operation["responses"]["431"] = {"$ref": f"#/components/responses/{_ERRORS['431'][0]}"}
    return {
        **_openai_paths(),
        **door_paths(),
        **messages,
        **_batch_paths(),
        **_thrifty_paths(),
        **_admin_paths(),
    }


def _admin_paths() -> dict[str, Any]:
    """``/admin/keys`` and ``/admin/teams`` (admin keys only), and the dashboard's session."""
    tags = ("admin",)
    no_store = {"cache-control": {"description": "`no-store`.", "schema": {"type": "string"}}}

    def ok(name: str, status: str = "200") -> dict[str, Any]:
        return {
            status: {
                "description": "Created." if status == "201" else "OK",
                "content": _json(ref(name)),
                "headers": no_store,
            }
        }

    key_id = [_path_parameter("key_id", "A virtual key's id (`key_...`).")]
    team = [_path_parameter("team", "A team's name.")]
    by_team = [
        {
            "name": "team",
            "in": "query",
            "required": False,
            "description": "Only this team's keys.",
            "schema": {"type": "string"},
        }
    ]
    written = ("400", "403", "413")
    action = {"parameters": key_id, "tags": list(tags)}
    redirect = {
        "303": {
            "description": "Back to the dashboard (`location`); on a failed login with "
            "`?login=failed`, or `?login=admin` for a key that is not an admin's.",
            "headers": {
                "location": {"required": True, "schema": {"type": "string"}},
                "set-cookie": {
                    "description": f"`{SESSION_COOKIE}`: the session (HttpOnly, "
                    "SameSite=Strict), set or cleared.",
                    "schema": {"type": "string"},
                },
            },
        }
    }
    return {
        "/admin/keys": {
            **_post(
                "createKey",
                "Create a virtual key (its secret is in this answer only)",
                ref("KeyCreate"),
                ok("KeyWithSecret", "201"),
                *written,
                "404",
                tags=tags,
                description="400 `duplicate` for a name already taken; 404 for a team that does not exist.",
            ),
            **_get(
                "listKeys", "Virtual keys, oldest first", ok("KeyList"), "403", tags=tags, parameters=by_team
            ),
        },
        "/admin/keys/{key_id}": {
            **_get(
                "getKey",
                "A virtual key and its spend",
                ok("KeyWithSpend"),
                "403",
                "404",
                tags=tags,
                parameters=key_id,
            ),
            "patch": {
                "operationId": "updateKey",
                "summary": "Change a key's budget, limits, models or expiry",
                "requestBody": {"required": True, "content": _json(ref("KeyUpdate"))},
                "responses": _responses(ok("Key"), *written, "404"),
                **action,
            },
            "delete": {
                "operationId": "deleteKey",
                "summary": "Revoke a key (it stays listed, revoked)",
                "responses": _responses(ok("Key"), "403", "404"),
                **action,
            },
        },
        "/admin/keys/{key_id}/revoke": {
            "post": {
                "operationId": "revokeKey",
                "summary": "Revoke a key (as DELETE)",
                "responses": _responses(ok("Key"), "403", "404"),
                **action,
            }
        },
        "/admin/keys/{key_id}/rotate": {
            "post": {
                "operationId": "rotateKey",
                "summary": "A new secret for the same key; the old one stops working",
                "description": "400 for a revoked key.",
                "responses": _responses(ok("KeyWithSecret"), "400", "403", "404"),
                **action,
            }
        },
        "/admin/teams": {
            **_post(
                "createTeam",
                "Create a team",
                ref("TeamCreate"),
                ok("Team", "201"),
                *written,
                tags=tags,
                description="400 `duplicate` for a name already taken.",
            ),
            **_get("listTeams", "Teams, by name", ok("TeamList"), "403", tags=tags),
        },
        "/dashboard/api/teams": _get(
            "dashboardTeams",
            "The dashboard's team view: every team and key with budget, limits and spend",
            ok("TenancyOverview"),
            "403",
            tags=tags,
        ),
        "/admin/teams/{team}": {
            **_get(
                "getTeam",
                "A team, its spend and its keys",
                ok("TeamWithSpend"),
                "403",
                "404",
                tags=tags,
                parameters=team,
            ),
            "patch": {
                "operationId": "updateTeam",
                "summary": "Change a team's budget, limits or models",
                "tags": list(tags),
                "parameters": team,
                "requestBody": {"required": True, "content": _json(ref("TeamUpdate"))},
                "responses": _responses(ok("Team"), *written, "404"),
            },
        },
        "/dashboard/login": {
            "post": {
                "operationId": "dashboardLogin",
                "summary": "Trade an admin key for a dashboard session cookie",
                "tags": list(tags),
                "security": [],
                "requestBody": {
                    "required": True,
                    "content": {"application/x-www-form-urlencoded": {"schema": ref("DashboardLogin")}},
                },
                "responses": _responses(redirect, secured=False),
            }
        },
        "/dashboard/logout": {
            "post": {
                "operationId": "dashboardLogout",
                "summary": "End the dashboard session",
                "tags": list(tags),
                "security": [],
                "responses": _responses(redirect, secured=False),
            }
        },
    }


def _openai_paths() -> dict[str, Any]:
    return {
        "/v1/chat/completions": _chat_operation(alias=False),
        "/chat/completions": _chat_operation(alias=True),
        "/v1/models": _get(
            "listModels", "The model names this gateway serves", _ok(ref("ModelList")), tags=("openai",)
        ),
        "/v1/embeddings": _post(
            "createEmbeddings",
            "Embeddings",
            ref("EmbeddingRequest"),
            _ok(ref("EmbeddingList")),
            "400",
            "404",
            "413",
            "429",
            "502",
            "503",
            tags=("openai",),
        ),
    }


def _batch_paths() -> dict[str, Any]:
    batch_id = [_path_parameter("batch_id", "A batch id (`batch_...`).")]
    file_id = [_path_parameter("file_id", "A file id (`file-...`).")]
    listing = [
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
        },
        {
            "name": "after",
            "in": "query",
            "required": False,
            "description": "A batch id: list the ones older.",
            "schema": {"type": "string"},
        },
    ]
    tags = ("batch",)
    return {
        "/v1/files": _post(
            "uploadFile",
            "Upload a batch input file (JSONL)",
            ref("FileUpload"),
            _ok(ref("File")),
            "400",
            "413",
            tags=tags,
            media="multipart/form-data",
        ),
        "/v1/files/{file_id}": _get(
            "getFile", "A file's metadata", _ok(ref("File")), "404", tags=tags, parameters=file_id
        ),
        "/v1/files/{file_id}/content": _get(
            "getFileContent",
            "A file's bytes (batch inputs, outputs, errors)",
            {
                "200": {
                    "description": "The file, JSONL.",
                    "content": {"application/jsonl": {"schema": {"type": "string"}}},
                }
            },
            "404",
            tags=tags,
            parameters=file_id,
        ),
        "/v1/batches": {
            **_post(
                "createBatch",
                "Create a batch from an uploaded file; it starts at once",
                ref("BatchRequest"),
                _ok(ref("Batch")),
                "400",
                "404",
                "413",
                tags=tags,
            ),
            **_get(
                "listBatches",
                "Batches, newest first",
                _ok(ref("BatchList")),
                "400",
                tags=tags,
                parameters=listing,
            ),
        },
        "/v1/batches/{batch_id}": _get(
            "getBatch",
            "A batch's status and counts",
            _ok(ref("Batch")),
            "404",
            tags=tags,
            parameters=batch_id,
        ),
        "/v1/batches/{batch_id}/cancel": {
            "post": {
                "operationId": "cancelBatch",
                "summary": "Stop a batch; results so far are kept",
                "tags": list(tags),
                "parameters": batch_id,
                "responses": _responses(_ok(ref("Batch")), "404", "409"),
            }
        },
    }


def _thrifty_paths() -> dict[str, Any]:
    text_ok = {"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}}
    html_ok = {
        "200": {
            "description": "The dashboard page.",
            "content": {"text/html": {"schema": {"type": "string"}}},
        }
    }
    key_or_none: list[dict[str, list[str]]] = [
        {"bearerAuth": []},
        {"apiKeyHeader": []},
        {"sessionCookie": []},
        {},
    ]
    return {
        "/v1/cache/purge": _post(
            "purgeCache",
            "Forget a cache namespace on every level",
            ref("CachePurgeRequest"),
            _ok(ref("CachePurgeResult")),
            "400",
            "403",
            "413",
        ),
        "/v1/feedback": _post(
            "createFeedback",
            "Rate a response (feeds the router)",
            ref("FeedbackRequest"),
            _ok(ref("Feedback")),
            "400",
            "404",
            "413",
            "503",
        ),
        "/v1/feedback/{response_id}": _get(
            "listFeedback",
            "A response's ledger row and its ratings",
            _ok(ref("FeedbackList")),
            "404",
            parameters=[_path_parameter("response_id", "The completion's `id`.")],
        ),
        "/admin/status": _get(
            "adminStatus",
            "Live state of every layer: breakers, queues, caches, routers",
            _ok({"type": "object"}),
            "403",
            tags=("admin",),
        ),
        "/admin/learning": _get(
            "adminLearning",
            "What the learning layers learned: experiments, evidence, promotions",
            _ok(ref("Learning")),
            "403",
            tags=("admin",),
        ),
        "/dashboard/api/learning": _get(
            "dashboardLearning",
            "The dashboard's learning panel: the same report as /admin/learning",
            _ok(ref("Learning")),
            "403",
            tags=("admin",),
        ),
        "/admin/alerts": _get(
            "adminAlerts", "Health rules currently firing", _ok(ref("AlertList")), "403", tags=("admin",)
        ),
        "/metrics": _get(
            "metrics",
            "Prometheus metrics",
            text_ok,
            "403",
            tags=("admin",),
            description="Needs a key unless `server.public_metrics` is set.",
            security=key_or_none,
        ),
        "/dashboard": _get(
            "dashboard",
            "The dashboard page",
            html_ok,
            tags=("admin",),
            description="The page (or its login form) loads without a key; its data does not.",
            security=key_or_none,
        ),
        "/dashboard/api/stats": _get(
            "dashboardStats",
            "Everything the dashboard shows",
            _ok({"type": "object"}),
            "403",
            tags=("admin",),
        ),
        "/dashboard/api/status": _get(
            "dashboardStatus",
            "Each layer's live report, as /admin/status gives it (elastic replicas panel)",
            _ok({"type": "object"}),
            "403",
            tags=("admin",),
        ),
        "/dashboard/static/{name}": _get(
            "dashboardAsset",
            "The dashboard's script and style",
            {
                "200": {
                    "description": "The asset.",
                    "content": {
                        "text/javascript": {"schema": {"type": "string"}},
                        "text/css": {"schema": {"type": "string"}},
                    },
                }
            },
            "404",
            secured=False,
            tags=("admin",),
            parameters=[
                _path_parameter("name", "The asset's file name.", {"type": "string", "minLength": 1})
            ],
        ),
        "/health": _get(
            "health",
            "Liveness: answers as soon as the process serves",
            _ok(ref("Health")),
            secured=False,
            tags=("probes",),
        ),
        "/ready": _get(
            "ready",
            "Readiness: models loaded",
            {
                "200": {
                    "description": "Serving: `ready`, or `degraded` with the `reasons` (a part "
                    "serves without its store: the ledger, a cache's disk level, "
                    "the batch store).",
                    "content": _json(ref("Ready")),
                },
                "503": {"description": "Still loading.", "content": _json(ref("Ready"))},
            },
            secured=False,
            tags=("probes",),
        ),
        "/openapi.json": _get(
            "openapi", "This document", _ok({"type": "object"}), secured=False, tags=("probes",)
        ),
    }


def document(
    server: ServerConfig, models: Sequence[str] | None = None, *, pool: bool = False
) -> dict[str, Any]:
    """The OpenAPI document for a gateway with these server settings (and served ``models``, if known);
    ``pool``: with the device pool's routes."""
    from .openapi_doors import schemas as door_schemas

    description = (
        "An OpenAI-compatible LLM gateway. Every error is OpenAI's error JSON "
        '`{"error": {message, type, param, code}}`, a wrong method on a known path included (405). '
        f"Bodies are limited to {server.max_body_bytes} bytes (files: {server.max_file_bytes}) and "
        f"{server.max_json_depth} levels of nesting; headers to {server.max_headers} and "
        f"{server.max_header_bytes} bytes. Per-request options go in the body's `thrifty` object or in "
        "`x-thrifty-<option>` headers."
    )
    return {
        "openapi": VERSION,
        "info": {"title": "thrifty", "version": _version(), "description": description},
        "security": [{"bearerAuth": []}, {"apiKeyHeader": []}, {"sessionCookie": []}],
        "tags": [
            {"name": n}
            for n in (
                "openai",
                "anthropic",
                "thrifty",
                "batch",
                "admin",
                *(("pool",) if pool else ()),
                "probes",
            )
        ],
        "paths": {**_paths(), **(openapi_pool.paths(_responses) if pool else {})},
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A `server.api_keys` entry (a plain string: admin, every route and object; "
                    "`{key, role: client}`: the model routes and the caller's own files, batches "
                    "and feedback), or a virtual key from `/admin/keys` (its role, budget and "
                    "limits). Needed on every route but the probes, the dashboard page and its "
                    "login, and `/metrics` when public, whenever keys are configured.",
                },
                "apiKeyHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-api-key",
                    "description": "The same key, for clients that send it this way.",
                },
                "sessionCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": SESSION_COOKIE,
                    "description": "The dashboard's session, from `POST /dashboard/login`.",
                },
            },
            "schemas": {
                **_chat_schemas(),
                **_chat_response_schemas(),
                **_openai_schemas(server),
                **door_schemas(),
                **openapi_messages.schemas(_numbers()),
                **_thrifty_schemas(),
                **_batch_schemas(),
                **openapi_tenancy.schemas(models),
                **(openapi_pool.schemas() if pool else {}),
            },
            "responses": _error_responses(),
        },
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("thrifty")
    except PackageNotFoundError:
        return "0"


def route(server: ServerConfig, models: Sequence[str] | None = None, *, pool: bool = False) -> Route:
    """``GET /openapi.json``, rendered once; it needs no key."""
    body = orjson.dumps(document(server, models, pool=pool))

    async def openapi(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Route("/openapi.json", openapi, methods=["GET"])
