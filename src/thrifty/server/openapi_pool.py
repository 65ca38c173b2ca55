"""The OpenAPI paths and schemas of the device pool (``thrifty.pool.routes``), as the parsers in
``thrifty.pool.protocol`` enforce them. ``server/openapi.py`` merges them in when the gateway
has a pool; ``responses(ok, *errors)`` is its helper for the shared error responses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..pool.protocol import MAX_CHUNKS, MAX_LEASE, MAX_MODELS, POWER_STATES

Schema = dict[str, Any]
Responses = Callable[..., dict[str, Any]]

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _obj(properties: dict[str, Schema], required: tuple[str, ...] = (), **extra: Any) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
        **extra,
    }


def schemas() -> dict[str, Schema]:
    number = {"type": "number"}
    worker_state = {"enum": ["active", "draining", "gone"]}
    capabilities = _obj(
        {
            "models": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_MODELS,
                "items": _obj(
                    {
                        "name": {"type": "string", "pattern": _NAME},
                        "n_ctx": {"type": "integer", "minimum": 16, "maximum": 10_000_000},
                        "tokens_per_s": {"type": "number", "minimum": 0.001, "maximum": 1e6},
                    },
                    ("name", "n_ctx", "tokens_per_s"),
                ),
            },
            "concurrency": {"type": "integer", "minimum": 1, "maximum": 1024},
            "memory_mb": {"type": ["integer", "null"], "minimum": 0, "maximum": 1 << 40},
            "power": {"enum": list(POWER_STATES)},
            "battery": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
        },
        ("models",),
    )
    task = {
        "type": "object",
        "properties": {
            "task_id": {"type": "string"},
            "lease": {"type": "string"},
            "stream": {"type": "boolean"},
            "request": {"type": "object", "description": "An OpenAI chat-completions body."},
        },
        "required": ["task_id", "lease", "stream", "request"],
    }
    worker = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "state": worker_state,
            "load": {"type": "integer"},
            "active": {"type": "integer"},
            "silent_s": number,
            "capabilities": {"type": "object"},
        },
        "required": ["id", "name", "state", "load", "capabilities"],
    }
    token: Schema = {
        "type": "object",
        "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "created": {"type": "integer"}},
        "required": ["id", "name", "created"],
    }
    return {
        "PoolCapabilities": capabilities,
        "PoolJoin": _obj({"capabilities": _ref("PoolCapabilities")}, ("capabilities",)),
        "PoolJoined": {
            "type": "object",
            "properties": {
                "worker_id": {"type": "string"},
                "name": {"type": "string"},
                "heartbeat": number,
                "lease_wait": number,
            },
            "required": ["worker_id", "heartbeat", "lease_wait"],
        },
        "PoolLease": _obj(
            {
                "wait": {
                    "type": "number",
                    "minimum": 0,
                    "description": "Seconds to wait for work (long poll).",
                },
                "max": {"type": "integer", "minimum": 1, "maximum": MAX_LEASE},
                "held": {"type": "array", "maxItems": 1024, "items": {"type": "string"}},
            }
        ),
        "PoolTasks": {
            "type": "object",
            "properties": {"state": worker_state, "tasks": {"type": "array", "items": task}},
            "required": ["state", "tasks"],
        },
        "PoolHeartbeat": _obj(
            {
                "active": {"type": "integer", "minimum": 0, "maximum": 1_000_000},
                "power": {"enum": list(POWER_STATES)},
                "battery": {"type": ["number", "null"], "minimum": 0, "maximum": 100},
            }
        ),
        "PoolState": {"type": "object", "properties": {"state": worker_state}, "required": ["state"]},
        "PoolResult": _obj(
            {
                "lease": {"type": "string", "minLength": 8, "maxLength": 64},
                "chunks": {"type": "array", "maxItems": MAX_CHUNKS, "items": {"type": "object"}},
                "response": {
                    "type": "object",
                    "description": "A chat.completion body (non-empty `choices`).",
                },
                "error": {
                    "type": "object",
                    "properties": {"message": {"type": "string"}},
                    "required": ["message"],
                },
                "done": {"type": "boolean"},
            },
            ("lease",),
            description="`response` or `error` end the task and need `done: true`.",
        ),
        "PoolAccepted": {
            "type": "object",
            "properties": {"accepted": {"const": True}},
            "required": ["accepted"],
        },
        "PoolRelease": _obj({"leave": {"type": "boolean"}}),
        "PoolOverview": {
            "type": "object",
            "properties": {
                "workers": {"type": "array", "items": worker},
                "stats": {"type": "object", "additionalProperties": {"type": "integer"}},
                "parked": {"type": "integer"},
                "events": {"type": "array", "items": {"type": "object"}},
            },
            "required": ["workers", "stats", "parked", "events"],
        },
        "PoolTokenCreate": _obj(
            {"name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$"}}, ("name",)
        ),
        "PoolToken": token,
        "PoolTokenWithSecret": {
            **token,
            "properties": {**token["properties"], "token": {"type": "string"}},
            "required": [*token["required"], "token"],
        },
        "PoolTokenList": {
            "type": "object",
            "properties": {"data": {"type": "array", "items": token}},
            "required": ["data"],
        },
        "PoolRevoked": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "revoked": {"const": True}},
            "required": ["id", "revoked"],
        },
    }


def paths(responses: Responses) -> dict[str, Any]:
    """The pool's operations; ``responses(ok, *errors)`` adds the shared error responses."""
    worker_security: list[dict[str, list[str]]] = [{"bearerAuth": []}]
    tags = ["pool"]

    def ok(name: str, status: str = "200") -> dict[str, Any]:
        return {
            status: {"description": "Created." if status == "201" else "OK", "content": _json(_ref(name))}
        }

    def worker_op(
        op: str, summary: str, body: str, answer: str, *errors: str, **extra: Any
    ) -> dict[str, Any]:
        return {
            "post": {
                "operationId": op,
                "summary": summary,
                "tags": tags,
                "security": worker_security,
                "description": "Authenticated by the worker's join token (`Authorization: Bearer`). "
                + extra.pop("description", ""),
                "requestBody": {"required": True, "content": _json(_ref(body))},
                "responses": responses(ok(answer), "400", "413", *errors),
                **extra,
            }
        }

    def admin(
        op: str, summary: str, answer: str, *errors: str, status: str = "200", **extra: Any
    ) -> dict[str, Any]:
        return {
            "operationId": op,
            "summary": summary,
            "tags": tags,
            "responses": responses(ok(answer, status), "403", *errors),
            **extra,
        }

    task_id = {
        "name": "task_id",
        "in": "path",
        "required": True,
        "description": "A task id from a lease.",
        "schema": {"type": "string", "pattern": "^[0-9a-f]{20}$"},
    }
    token_id = {
        "name": "token_id",
        "in": "path",
        "required": True,
        "description": "A join token's id (`wk_...`), which is also its worker's id.",
        "schema": {"type": "string", "minLength": 1},
    }
    return {
        "/pool/v1/join": worker_op("poolJoin", "Join the pool with capabilities", "PoolJoin", "PoolJoined"),
        "/pool/v1/lease": worker_op(
            "poolLease",
            "Lease the tasks sent to this worker (long poll)",
            "PoolLease",
            "PoolTasks",
            "409",
            description="409 `rejoin` when the worker is no longer in the pool.",
        ),
        "/pool/v1/heartbeat": worker_op(
            "poolHeartbeat", "Tell the pool this worker is alive", "PoolHeartbeat", "PoolState", "409"
        ),
        "/pool/v1/tasks/{task_id}/result": worker_op(
            "poolResult",
            "Send chunks, the answer or an error for a leased task",
            "PoolResult",
            "PoolAccepted",
            "403",
            "404",
            "409",
            parameters=[task_id],
            description="403 `not_lease_holder` from a worker that does not hold the lease; 409 "
            "`task_done` once the task is finished or cancelled.",
        ),
        "/pool/v1/release": worker_op(
            "poolRelease", "Drain (finish what it has) or leave the pool", "PoolRelease", "PoolState", "409"
        ),
        "/admin/pool/workers": {
            "get": admin("poolWorkers", "Workers, load, tasks and migrations", "PoolOverview")
        },
        "/dashboard/api/pool": {
            "get": admin(
                "dashboardPool",
                "The dashboard's pool panel: the same as /admin/pool/workers",
                "PoolOverview",
                description="Under /dashboard so the dashboard's session cookie reaches it.",
            )
        },
        "/admin/pool/tokens": {
            "get": admin("poolTokens", "Join tokens", "PoolTokenList"),
            "post": admin(
                "poolTokenCreate",
                "Create a join token for one worker (its secret is in this answer only)",
                "PoolTokenWithSecret",
                "400",
                "413",
                status="201",
                requestBody={"required": True, "content": _json(_ref("PoolTokenCreate"))},
            ),
        },
        "/admin/pool/tokens/{token_id}": {
            "delete": admin(
                "poolTokenRevoke",
                "Revoke a join token: its worker is out, its tasks move",
                "PoolRevoked",
                "404",
                parameters=[token_id],
            )
        },
    }
