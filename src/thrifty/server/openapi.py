"""thrifty's own OpenAPI 3.1 document, written by hand as data and served at ``/openapi.json``.

Nothing generates it from the handlers: it is the contract clients and fuzzers
read, and ``tests/server/test_openapi.py`` holds the handlers to it (every route
listed, every status and body a real request gets checked against these
schemas). The checks :mod:`thrifty.validate` makes (roles, number ranges) and
the bounds in :class:`~thrifty.config.ServerConfig` are read from where they are
enforced, so the document cannot drift from them.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..config import ServerConfig
from ..observe.feedback import MAX_ANSWER, MAX_COMMENT
from ..tasks.batch_format import CHAT_URLS
from ..validate import _NUMBERS, ROLES

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
    "400": ("BadRequest", "The request is malformed: bad JSON, a wrong type, a value out of range, "
                          "nesting deeper than the limit. `param` names the field."),
    "401": ("Unauthorized", "No API key, or one the gateway does not know."),
    "403": ("Forbidden", "The key is valid but not allowed here (a client key on an admin route)."),
    "404": ("NotFound", "No such model, file, batch or response id, or it belongs to another key."),
    "409": ("Conflict", "The object is in a state that does not allow this (a finished batch)."),
    "413": ("PayloadTooLarge", "The body is larger than the configured limit."),
    "429": ("TooManyRequests", "Rate limited or the admission queue is full; see `retry-after`."),
    "431": ("HeadersTooLarge", "The request's headers are too large or too many."),
    "500": ("ServerError", "The gateway failed unexpectedly; the error was logged."),
    "502": ("BadGateway", "The upstream failed or could not be reached."),
    "503": ("Unavailable", "No deployment is available (all down or their breakers open), or a store "
                           "the route needs is not open."),
    "504": ("GatewayTimeout", "The upstream did not answer in time."),
}

# Every operation can meet these, whatever it does.
_ALWAYS = ("431", "500")
_SECURED = ("401",)


def _error_responses() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, (name, text) in _ERRORS.items():
        response: dict[str, Any] = {"description": text, "content": _json(ref("Error"))}
        if status == "429":
            response["headers"] = {"retry-after": {
                "description": "Seconds to wait before retrying.", "schema": {"type": "string"}}}
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
_CACHE_DIRECTIVE = rf"(no-cache|no-store|semantic|no-semantic|ttl={_SECONDS}|namespace=[A-Za-z0-9_.:/-]{{1,64}})"

_OPTION_HEADERS: dict[str, tuple[str, Schema]] = {
    "cache": ("Cache directives, comma-separated (`semantic` and `no-semantic` exclude each other).",
              {"type": "string", "pattern": rf"^{_CACHE_DIRECTIVE}(, ?{_CACHE_DIRECTIVE})*$"}),
    "route": ("A routing policy or tier name, for a routed model.", {"type": "string"}),
    "route-policy": ("The routing policy, for a routed model.", {"type": "string"}),
    "timeout": ("Seconds for this request, every retry included.", {"type": "string", "pattern": f"^{_SECONDS}$"}),
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
    "x-thrifty-hedged": "The deployment a hedged second attempt went to.",
    "x-thrifty-usage": "`estimated` when the upstream reported no token usage.",
    "x-thrifty-agent": "The agent step this call was (`planner`, `joiner`).",
}


def _option_parameters() -> list[dict[str, Any]]:
    return [
        {"name": f"x-thrifty-{name}", "in": "header", "required": False, "description": text, "schema": schema}
        for name, (text, schema) in _OPTION_HEADERS.items()
    ]


def _path_parameter(name: str, description: str, schema: Schema | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or {"type": "string", "minLength": 1}}


# -- schemas -----------------------------------------------------------------

def _chat_schemas() -> dict[str, Schema]:
    text_part = {"type": "object", "required": ["type", "text"],
                 "properties": {"type": {"const": "text"}, "text": {"type": "string"}}}
    other_part = {"type": "object", "required": ["type"],
                  "properties": {"type": {"type": "string", "not": {"const": "text"}}}}
    content = {"anyOf": [{"type": "string"}, {"type": "array", "items": ref("ContentPart")}]}
    plain_roles = sorted(ROLES - {"tool"})
    message = {"anyOf": [
        {"type": "object", "required": ["role", "content"],
         "properties": {"role": {"enum": plain_roles}, "content": content, "name": {"type": "string"}}},
        {"type": "object", "required": ["role", "content", "tool_call_id"],
         "properties": {"role": {"const": "tool"}, "content": content, "tool_call_id": {"type": "string"}}},
        {"type": "object", "required": ["role", "tool_calls"],
         "properties": {"role": {"const": "assistant"}, "content": {"type": "null"},
                        "tool_calls": {"type": "array", "minItems": 1, "items": {"type": "object"}}}},
    ]}
    tool = {"type": "object", "required": ["function"], "properties": {
        "type": {"const": "function"},
        "function": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "description": {"type": "string"}, "parameters": {"type": "object"}}},
    }}
    properties: dict[str, Schema] = {
        "model": {"type": "string", "minLength": 1, "description": "A model group, router or fallback name."},
        "messages": {"type": "array", "minItems": 1, "items": ref("Message")},
        "stream": {"type": "boolean", "default": False},
        "stream_options": nullable({"type": "object", "properties": {"include_usage": {"type": "boolean"}}}),
        "stop": nullable({"anyOf": [{"type": "string"},
                                    {"type": "array", "maxItems": 4, "items": {"type": "string"}}]}),
        "tools": nullable({"type": "array", "items": ref("Tool")}),
        "response_format": nullable({"type": "object"}),
        "thrifty": {"type": "object", "description": "Per-request thrifty options (as the x-thrifty-* "
                    "headers): cache, route, timeout, session_id, tenant.",
                    "properties": {"tenant": {"type": "string"}}},
    }
    for name, (types, low, high) in _NUMBERS.items():
        number: Schema = {"type": "integer" if types == (int,) else "number"}
        if low is not None:
            number["minimum"] = low
        if high is not None:
            number["maximum"] = high
        properties[name] = nullable(number)
    return {
        "ContentPart": {"anyOf": [text_part, other_part]},
        "Message": message,
        "Tool": tool,
        "ChatCompletionRequest": {"type": "object", "required": ["model", "messages"], "properties": properties,
                                  "description": "Unknown fields pass through to the upstream."},
    }


def _chat_response_schemas() -> dict[str, Schema]:
    usage = {"type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
             "properties": {k: {"type": "integer", "minimum": 0}
                            for k in ("prompt_tokens", "completion_tokens", "total_tokens")}}
    answer = {"type": "object", "required": ["role"], "properties": {
        "role": {"const": "assistant"}, "content": {"type": ["string", "null"]},
        "tool_calls": {"type": "array", "items": {"type": "object"}}}}
    head = {"id": {"type": "string"}, "created": {"type": "integer"}, "model": {"type": "string"}}
    completion = {"type": "object", "required": ["id", "object", "created", "model", "choices"], "properties": {
        **head, "object": {"const": "chat.completion"}, "usage": ref("Usage"),
        "choices": {"type": "array", "items": {"type": "object", "required": ["index", "message"], "properties": {
            "index": {"type": "integer"}, "message": answer, "finish_reason": {"type": ["string", "null"]}}}}}}
    chunk = {"type": "object", "required": ["id", "object", "created", "model", "choices"], "properties": {
        **head, "object": {"const": "chat.completion.chunk"}, "usage": nullable(ref("Usage")),
        "choices": {"type": "array", "items": {"type": "object", "required": ["index", "delta"], "properties": {
            "index": {"type": "integer"}, "delta": {"type": "object"},
            "finish_reason": {"type": ["string", "null"]}}}}}}
    return {
        "Usage": usage,
        "ChatCompletion": completion,
        "ChatCompletionChunk": chunk,
    }


ALERTS: Schema = {"type": "object", "required": ["alerts"], "properties": {"alerts": {"type": "array", "items": {
    "type": "object", "required": ["rule", "value", "threshold", "message", "subject"], "properties": {
        "rule": {"type": "string"}, "value": {"type": "number"}, "threshold": {"type": "number"},
        "message": {"type": "string"}, "subject": {"type": "string"}}}}}}
READY: Schema = {"type": "object", "required": ["status"], "properties": {
    "status": {"enum": ["ready", "loading", "degraded"]},
    "models": {"type": "array", "items": {"type": "string"}}, "reason": {"type": "string"}}}


def _openai_schemas(server: ServerConfig) -> dict[str, Schema]:
    text = {"type": "string"}
    integer = {"type": "integer"}
    maybe_text = {"type": ["string", "null"]}
    return {
        "Error": {"type": "object", "required": ["error"], "additionalProperties": False, "properties": {
            "error": {"type": "object", "required": ["message", "type", "param", "code"],
                      "additionalProperties": False, "properties": {
                          "message": {"type": "string", "minLength": 1}, "type": {"type": "string", "minLength": 1},
                          "param": maybe_text, "code": maybe_text}}}},
        "ModelList": {"type": "object", "required": ["object", "data"], "properties": {
            "object": {"const": "list"}, "data": {"type": "array", "items": {
                "type": "object", "required": ["id", "object", "created", "owned_by"], "properties": {
                    "id": text, "object": {"const": "model"}, "created": integer, "owned_by": text}}}}},
        "EmbeddingRequest": {"type": "object", "required": ["model", "input"], "properties": {
            "model": {"type": "string", "minLength": 1},
            "input": {"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1,
                                                     "maxItems": server.max_embedding_inputs, "items": text}]}}},
        "EmbeddingList": {"type": "object", "required": ["object", "data", "model", "usage"], "properties": {
            "object": {"const": "list"}, "model": text,
            "data": {"type": "array", "items": {"type": "object", "required": ["object", "index", "embedding"],
                                                "properties": {"object": {"const": "embedding"}, "index": integer,
                                                               "embedding": {"type": "array",
                                                                             "items": {"type": "number"}}}}},
            "usage": {"type": "object", "required": ["prompt_tokens", "total_tokens"],
                      "properties": {"prompt_tokens": integer, "total_tokens": integer}}}},
    }


def _thrifty_schemas() -> dict[str, Schema]:
    text = {"type": "string"}
    integer = {"type": "integer"}
    maybe_text = {"type": ["string", "null"]}
    return {
        "CachePurgeRequest": {"type": "object", "required": ["namespace"],
                              "properties": {"namespace": {"type": "string", "minLength": 1}}},
        "CachePurgeResult": {"type": "object", "required": ["namespace", "removed"],
                             "properties": {"namespace": text, "removed": {"type": "integer", "minimum": 0}}},
        "FeedbackRequest": {"type": "object", "required": ["response_id", "rating"], "properties": {
            "response_id": {"type": "string", "pattern": r"\S",
                            "description": "The `id` of a chat completion this gateway answered."},
            "rating": {"type": "integer", "minimum": 1, "maximum": 5},
            "comment": nullable({"type": "string", "maxLength": MAX_COMMENT}),
            "corrected_answer": nullable({"type": "string", "maxLength": MAX_ANSWER})}},
        "Feedback": {"type": "object", "required": ["object", "id", "response_id", "rating"], "properties": {
            "object": {"const": "feedback"}, "id": integer, "response_id": text, "ts": {"type": "number"},
            "rating": integer, "comment": maybe_text, "corrected_answer": maybe_text, "model": maybe_text,
            "tier": maybe_text, "route": maybe_text}},
        "FeedbackList": {"type": "object", "required": ["object", "response_id", "request", "data"], "properties": {
            "object": {"const": "feedback.list"}, "response_id": text, "request": {"type": "object"},
            "data": {"type": "array", "items": {"type": "object", "required": ["id", "rating"]}}}},
        "AlertList": ALERTS,
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "Ready": READY,
    }


def _batch_schemas() -> dict[str, Schema]:
    text = {"type": "string"}
    integer = {"type": "integer"}
    maybe_text = {"type": ["string", "null"]}
    maybe_int = {"type": ["integer", "null"]}
    stamps = ("created_at", "expires_at", "in_progress_at", "finalizing_at", "completed_at", "failed_at",
              "expired_at", "cancelling_at", "cancelled_at")
    batch_status = ["validating", "in_progress", "finalizing", "completed", "failed", "expired",
                    "cancelling", "cancelled"]
    return {
        "FileUpload": {"type": "object", "required": ["purpose", "file"], "properties": {
            "purpose": {"const": "batch"},
            "file": {"type": "string", "format": "binary", "description": "JSONL, one request a line."}}},
        "File": {"type": "object", "required": ["id", "object", "bytes", "created_at", "filename", "purpose"],
                 "properties": {"id": text, "object": {"const": "file"}, "bytes": integer, "created_at": integer,
                                "filename": text, "purpose": {"enum": ["batch", "batch_output"]},
                                "status": text, "expires_at": maybe_int, "status_details": maybe_text}},
        "BatchRequest": {"type": "object", "required": ["input_file_id", "endpoint"], "properties": {
            "input_file_id": {"type": "string", "minLength": 1}, "endpoint": {"enum": list(CHAT_URLS)},
            "completion_window": {"const": "24h", "default": "24h"}, "metadata": nullable({"type": "object"})}},
        "Batch": {"type": "object", "required": ["id", "object", "endpoint", "input_file_id", "status",
                                                 "created_at", "request_counts"], "properties": {
            "id": text, "object": {"const": "batch"}, "endpoint": text, "input_file_id": text,
            "completion_window": text, "status": {"enum": batch_status}, "errors": {"type": ["object", "null"]},
            "output_file_id": maybe_text, "error_file_id": maybe_text, "metadata": {"type": ["object", "null"]},
            **{name: maybe_int for name in stamps},
            "request_counts": {"type": "object", "required": ["total", "completed", "failed"],
                               "properties": {k: integer for k in ("total", "completed", "failed")}}}},
        "BatchList": {"type": "object", "required": ["object", "data", "first_id", "last_id", "has_more"],
                      "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": ref("Batch")},
                                     "first_id": maybe_text, "last_id": maybe_text,
                                     "has_more": {"type": "boolean"}}},
    }


# -- operations --------------------------------------------------------------

def _chat_operation(alias: bool) -> dict[str, Any]:
    events = {"oneOf": [ref("ChatCompletionChunk"), ref("Error")]}
    ok = {"200": {
        "description": "The completion; with `stream: true`, server-sent events: one `data:` line per "
                       "`ChatCompletionChunk` (an `Error` object if the upstream fails after the first byte), "
                       "then `data: [DONE]`.",
        "headers": {name: {"description": text, "schema": {"type": "string"},
                           **({"required": True} if name == "x-thrifty-model" else {})}
                    for name, text in _RESPONSE_HEADERS.items()},
        "content": {**_json(ref("ChatCompletion")),
                    "text/event-stream": {"schema": {"type": "string"}, "x-thrifty-event-schema": events}},
    }}
    return {"post": {
        "operationId": "createChatCompletionAlias" if alias else "createChatCompletion",
        "summary": "Chat completion (the OpenAI path without /v1)" if alias else "Chat completion",
        "tags": ["openai"],
        "parameters": _option_parameters(),
        "requestBody": {"required": True, "content": _json(ref("ChatCompletionRequest"))},
        "responses": _responses(ok, "400", "404", "413", "429", "502", "503", "504"),
    }}


def _get(operation_id: str, summary: str, ok: dict[str, Any], *errors: str, secured: bool = True,
         tags: tuple[str, ...] = ("thrifty",), **extra: Any) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": list(tags),
                          "responses": _responses(ok, *errors, secured=secured), **extra}
    if not secured:
        op["security"] = []
    return {"get": op}


def _post(operation_id: str, summary: str, body: Schema, ok: dict[str, Any], *errors: str,
          tags: tuple[str, ...] = ("thrifty",), media: str = "application/json", **extra: Any) -> dict[str, Any]:
    return {"post": {"operationId": operation_id, "summary": summary, "tags": list(tags),
                     "requestBody": {"required": True, "content": {media: {"schema": body}}},
                     "responses": _responses(ok, *errors), **extra}}


def _paths() -> dict[str, Any]:
    from .openapi_doors import paths as door_paths

    return {**_openai_paths(), **door_paths(), **_batch_paths(), **_thrifty_paths()}


def _openai_paths() -> dict[str, Any]:
    return {
        "/v1/chat/completions": _chat_operation(alias=False),
        "/chat/completions": _chat_operation(alias=True),
        "/v1/models": _get("listModels", "The model names this gateway serves", _ok(ref("ModelList")),
                           tags=("openai",)),
        "/v1/embeddings": _post("createEmbeddings", "Embeddings", ref("EmbeddingRequest"),
                                _ok(ref("EmbeddingList")), "400", "404", "413", "429", "502", "503",
                                tags=("openai",)),
    }


def _batch_paths() -> dict[str, Any]:
    batch_id = [_path_parameter("batch_id", "A batch id (`batch_...`).")]
    file_id = [_path_parameter("file_id", "A file id (`file-...`).")]
    listing = [
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
        {"name": "after", "in": "query", "required": False, "description": "A batch id: list the ones older.",
         "schema": {"type": "string"}},
    ]
    tags = ("batch",)
    return {
        "/v1/files": _post("uploadFile", "Upload a batch input file (JSONL)", ref("FileUpload"),
                           _ok(ref("File")), "400", "413", tags=tags, media="multipart/form-data"),
        "/v1/files/{file_id}": _get("getFile", "A file's metadata", _ok(ref("File")), "404",
                                    tags=tags, parameters=file_id),
        "/v1/files/{file_id}/content": _get(
            "getFileContent", "A file's bytes (batch inputs, outputs, errors)",
            {"200": {"description": "The file, JSONL.",
                     "content": {"application/jsonl": {"schema": {"type": "string"}}}}},
            "404", tags=tags, parameters=file_id),
        "/v1/batches": {
            **_post("createBatch", "Create a batch from an uploaded file; it starts at once",
                    ref("BatchRequest"), _ok(ref("Batch")), "400", "404", "413", tags=tags),
            **_get("listBatches", "Batches, newest first", _ok(ref("BatchList")), "400",
                   tags=tags, parameters=listing),
        },
        "/v1/batches/{batch_id}": _get("getBatch", "A batch's status and counts", _ok(ref("Batch")), "404",
                                       tags=tags, parameters=batch_id),
        "/v1/batches/{batch_id}/cancel": {"post": {
            "operationId": "cancelBatch", "summary": "Stop a batch; results so far are kept", "tags": list(tags),
            "parameters": batch_id, "responses": _responses(_ok(ref("Batch")), "404", "409")}},
    }


def _thrifty_paths() -> dict[str, Any]:
    text_ok = {"200": {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}}
    html_ok = {"200": {"description": "The dashboard page.", "content": {"text/html": {"schema": {"type": "string"}}}}}
    key_or_none: list[dict[str, list[str]]] = [{"bearerAuth": []}, {}]
    return {
        "/v1/cache/purge": _post("purgeCache", "Forget a cache namespace on every level",
                                 ref("CachePurgeRequest"), _ok(ref("CachePurgeResult")), "400", "403", "413"),
        "/v1/feedback": _post("createFeedback", "Rate a response (feeds the router)", ref("FeedbackRequest"),
                              _ok(ref("Feedback")), "400", "404", "413", "503"),
        "/v1/feedback/{response_id}": _get(
            "listFeedback", "A response's ledger row and its ratings", _ok(ref("FeedbackList")), "404",
            parameters=[_path_parameter("response_id", "The completion's `id`.")]),
        "/admin/status": _get("adminStatus", "Live state of every layer: breakers, queues, caches, routers",
                              _ok({"type": "object"}), "403", tags=("admin",)),
        "/admin/alerts": _get("adminAlerts", "Health rules currently firing", _ok(ref("AlertList")), "403",
                              tags=("admin",)),
        "/metrics": _get("metrics", "Prometheus metrics", text_ok, "403", tags=("admin",),
                         description="Needs a key unless `server.public_metrics` is set.",
                         security=key_or_none),
        "/dashboard": _get("dashboard", "The dashboard page", html_ok, tags=("admin",),
                           description="The page (or its login form) loads without a key; its data does not.",
                           security=key_or_none),
        "/dashboard/api/stats": _get("dashboardStats", "Everything the dashboard shows",
                                     _ok({"type": "object"}), "403", tags=("admin",)),
        "/dashboard/static/{name}": _get(
            "dashboardAsset", "The dashboard's script and style",
            {"200": {"description": "The asset.", "content": {"text/javascript": {"schema": {"type": "string"}},
                                                              "text/css": {"schema": {"type": "string"}}}}},
            "404", secured=False, tags=("admin",),
            parameters=[_path_parameter("name", "The asset's file name.", {"type": "string", "minLength": 1})]),
        "/health": _get("health", "Liveness: answers as soon as the process serves", _ok(ref("Health")),
                        secured=False, tags=("probes",)),
        "/ready": _get("ready", "Readiness: models loaded, stores open",
                       {"200": {"description": "Ready.", "content": _json(ref("Ready"))},
                        "503": {"description": "Still loading, or degraded (see `reason`).",
                                "content": _json(ref("Ready"))}},
                       secured=False, tags=("probes",)),
        "/openapi.json": _get("openapi", "This document", _ok({"type": "object"}), secured=False,
                              tags=("probes",)),
    }


def document(server: ServerConfig) -> dict[str, Any]:
    """The OpenAPI document for a gateway with these server settings."""
    from .openapi_doors import schemas as door_schemas

    description = (
        "An OpenAI-compatible LLM gateway. Every error is OpenAI's error JSON "
        "`{\"error\": {message, type, param, code}}`, a wrong method on a known path included (405). "
        f"Bodies are limited to {server.max_body_bytes} bytes (files: {server.max_file_bytes}) and "
        f"{server.max_json_depth} levels of nesting; headers to {server.max_headers} and "
        f"{server.max_header_bytes} bytes. Per-request options go in the body's `thrifty` object or in "
        "`x-thrifty-<option>` headers."
    )
    return {
        "openapi": VERSION,
        "info": {"title": "thrifty", "version": _version(), "description": description},
        "security": [{"bearerAuth": []}],
        "tags": [{"name": n} for n in ("openai", "thrifty", "batch", "admin", "probes")],
        "paths": _paths(),
        "components": {
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "One of `server.api_keys` (admin: every route and object) or "
                               "`server.client_keys` (the model routes and the caller's own objects). "
                               "Needed on every route but the probes when keys are configured."}},
            "schemas": {**_chat_schemas(), **_chat_response_schemas(), **_openai_schemas(server), **door_schemas(),
                        **_thrifty_schemas(), **_batch_schemas()},
            "responses": _error_responses(),
        },
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("thrifty")
    except PackageNotFoundError:
        return "0"


def route(server: ServerConfig) -> Route:
    """``GET /openapi.json``, rendered once; it needs no key."""
    body = orjson.dumps(document(server))

    async def openapi(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Route("/openapi.json", openapi, methods=["GET"])
