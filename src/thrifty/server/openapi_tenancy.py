"""The OpenAPI schemas of virtual keys and teams, as ``thrifty.tenancy.admin`` takes and gives them.

``server/openapi.py`` merges :func:`schemas` into ``components.schemas``; the paths
(``/admin/keys``, ``/admin/teams``) stay there with the other operations.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..tenancy.policy import MAX_DURATION_S, PERIODS

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def schemas(models: Sequence[str] | None) -> dict[str, Schema]:
    """Virtual keys and teams; ``models``, when known, are the only names an allow-list may hold."""
    text = {"type": "string"}
    maybe_int = {"type": ["integer", "null"]}
    name = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,63}$"}
    periods = "|".join(PERIODS)
    budget = _nullable(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": rf"^\$?[0-9]{{1,12}}(\.[0-9]{{1,6}})?(/({periods}))?$",
                    "description": "USD per period (`50/month`; no period: in total, never reset).",
                },
                {"type": "number", "minimum": 0, "exclusiveMaximum": 1e12, "description": "USD in total."},
            ]
        }
    )
    limit = _nullable({"type": "integer", "minimum": 1, "maximum": 2**53 - 1})
    served: Schema = {"type": "string", "minLength": 1} if models is None else {"enum": list(models)}
    one = "|".join(re.escape(m) for m in models) if models else "[^,]+"
    model_list = _nullable(
        {
            "anyOf": [
                {"type": "array", "items": served},
                {"type": "string", "pattern": rf"^({one})(,({one}))*$", "description": "Comma-separated."},
            ],
            "description": "The served models this key or team may use; none: every model.",
        }
    )
    expires = _nullable(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": r"^[0-9]{1,3}(\.[0-9]{1,3})?[smhdw]$",
                    "not": {"pattern": r"^[0.]+[smhdw]$"},
                    "description": "A lifetime from now: `30d`, `12h`, `90m`, `45s`, `2w`.",
                },
                {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "maximum": MAX_DURATION_S,
                    "description": "Seconds from now.",
                },
            ]
        }
    )
    policy = {"budget": budget, "rpm": limit, "tpm": limit, "parallel": limit, "models": model_list}
    policy_out = {
        "budget": {"type": ["string", "null"]},
        "rpm": maybe_int,
        "tpm": maybe_int,
        "parallel": maybe_int,
        "models": {"type": "array", "items": text},
    }
    spend = {
        "type": "object",
        "required": ["total_usd"],
        "properties": {
            "total_usd": {"type": "number"},
            "period": {"enum": list(PERIODS)},
            "period_usd": {"type": "number"},
            "left_usd": {"type": "number"},
        },
    }
    key = {
        "type": "object",
        "required": [
            "object",
            "id",
            "name",
            "team",
            "role",
            "prefix",
            "budget",
            "rpm",
            "tpm",
            "parallel",
            "models",
            "expires_at",
            "revoked_at",
            "created_at",
        ],
        "properties": {
            "object": {"const": "key"},
            "id": text,
            "name": text,
            "team": {"type": ["string", "null"]},
            "role": {"enum": ["client", "admin"]},
            "prefix": text,
            **policy_out,
            "expires_at": maybe_int,
            "revoked_at": maybe_int,
            "created_at": {"type": "integer"},
        },
    }
    team = {
        "type": "object",
        "required": ["object", "name", "created_at", "budget", "rpm", "tpm", "parallel", "models"],
        "properties": {
            "object": {"const": "team"},
            "name": text,
            "created_at": {"type": "integer"},
            **policy_out,
        },
    }
    return {
        "KeyCreate": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": name,
                "team": _nullable({**name, "description": "An existing team."}),
                "role": {"enum": ["client", "admin"], "default": "client"},
                **policy,
                "expires": expires,
            },
        },
        "KeyUpdate": {
            "type": "object",
            "additionalProperties": False,
            "properties": {**policy, "expires": expires},
            "description": "Only the fields sent change.",
        },
        "Key": key,
        "KeyWithSecret": {
            "allOf": [
                _ref("Key"),
                {
                    "type": "object",
                    "required": ["secret"],
                    "properties": {
                        "secret": {
                            "type": "string",
                            "description": "The key itself: shown in this answer only.",
                        }
                    },
                },
            ]
        },
        "KeyWithSpend": {
            "allOf": [
                _ref("Key"),
                {"type": "object", "required": ["spend"], "properties": {"spend": _ref("Spend")}},
            ]
        },
        "KeyList": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _ref("Key")}},
        },
        "TeamCreate": {
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {"name": name, **policy},
        },
        "TeamUpdate": {
            "type": "object",
            "additionalProperties": False,
            "properties": policy,
            "description": "Only the fields sent change.",
        },
        "Team": team,
        "TeamWithSpend": {
            "allOf": [
                _ref("Team"),
                {
                    "type": "object",
                    "required": ["spend", "keys"],
                    "properties": {"spend": _ref("Spend"), "keys": {"type": "array", "items": _ref("Key")}},
                },
            ]
        },
        "TeamList": {
            "type": "object",
            "required": ["object", "data"],
            "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _ref("Team")}},
        },
        "Spend": spend,
        "TenancyOverview": {
            "type": "object",
            "required": ["object", "teams", "keys"],
            "properties": {
                "object": {"const": "tenancy.overview"},
                "teams": {
                    "type": "array",
                    "items": {
                        "allOf": [
                            _ref("Team"),
                            {"type": "object", "required": ["spend"], "properties": {"spend": _ref("Spend")}},
                        ]
                    },
                },
                "keys": {"type": "array", "items": _ref("KeyWithSpend")},
            },
        },
        "DashboardLogin": {
            "type": "object",
            "required": ["key"],
            "properties": {"key": {"type": "string", "description": "An admin key."}},
        },
    }
