"""Managing keys and teams: the operations behind ``/admin/keys``, ``/admin/teams`` and ``thrifty keys``.

Each operation takes the JSON a client sent (or the CLI built) and returns
JSON; bad input is an :class:`InvalidRequest` naming the field, and every
check runs before anything is written.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidRequest
from .policy import check_name, parse_duration, parse_policy
from .store import KeyStore, Team

_KEY_FIELDS = {"name", "team", "role", "budget", "rpm", "tpm", "parallel", "models", "expires"}
_TEAM_FIELDS = {"name", "budget", "rpm", "tpm", "parallel", "models"}


def _fields(body: Mapping[str, Any], allowed: set[str]) -> None:
    if not isinstance(body, Mapping):
        raise InvalidRequest("The request body must be a JSON object.")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(
            f"Unknown field '{unknown[0]}'; expected some of {', '.join(sorted(allowed))}.", param=unknown[0]
        )


class KeyAdmin:
    def __init__(self, store: KeyStore, models: Sequence[str] | None) -> None:
        self.store = store
        self.models = list(models) if models is not None else None

    # -- keys -------------------------------------------------------------------------

    def create_key(self, body: Mapping[str, Any]) -> dict[str, Any]:
        _fields(body, _KEY_FIELDS)
        name = check_name(body.get("name"))
        team = body.get("team")
        if team is not None:
            check_name(team, "team")
        policy = parse_policy(body, self.models)
        expires = body.get("expires")
        expires_at = None if expires is None else time.time() + parse_duration(expires)
        record, secret = self.store.create_key(
            name, team=team, role=body.get("role", "client"), policy=policy, expires_at=expires_at
        )
        return {**record.to_json(), "secret": secret}

    def list_keys(self, team: str | None = None) -> dict[str, Any]:
        return {"object": "list", "data": [k.to_json() for k in self.store.list_keys(team)]}

    def get_key(self, key_id: str) -> dict[str, Any]:
        record = self.store.get_key(key_id)
        return {**record.to_json(), "spend": self._spend(f"key:{record.id}", record.policy.budget)}

    def update_key(self, key_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        _fields(body, _KEY_FIELDS - {"name", "team", "role"})
        current = self.store.get_key(key_id)
        merged = {**_policy_body(current.to_json()), **body}
        policy = parse_policy(merged, self.models)
        expires_at = current.expires_at
        if "expires" in body:
            expires = body["expires"]
            expires_at = None if expires is None else time.time() + parse_duration(expires)
        return self.store.update_key(key_id, policy, expires_at).to_json()

    def rotate_key(self, key_id: str) -> dict[str, Any]:
        record, secret = self.store.rotate(key_id)
        return {**record.to_json(), "secret": secret}

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        return self.store.revoke(key_id).to_json()

    # -- teams ------------------------------------------------------------------------

    def create_team(self, body: Mapping[str, Any]) -> dict[str, Any]:
        _fields(body, _TEAM_FIELDS)
        name = check_name(body.get("name"))
        return self.store.create_team(Team(name, parse_policy(body, self.models))).to_json()

    def list_teams(self) -> dict[str, Any]:
        return {"object": "list", "data": [t.to_json() for t in self.store.list_teams()]}

    def get_team(self, name: str) -> dict[str, Any]:
        team = self.store.get_team(name)
        assert team is not None
        keys = [k.to_json() for k in self.store.list_keys(name)]
        return {**team.to_json(), "spend": self._spend(f"team:{name}", team.policy.budget), "keys": keys}

    def update_team(self, name: str, body: Mapping[str, Any]) -> dict[str, Any]:
        _fields(body, _TEAM_FIELDS - {"name"})
        team = self.store.get_team(name)
        assert team is not None
        merged = {**_policy_body(team.to_json()), **body}
        return self.store.update_team(name, parse_policy(merged, self.models)).to_json()

    # -- the dashboard's team view ------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        """Every team and key with its budget, limits and spend (as the database holds it:
        replicas add their spend about once a second)."""
        teams = [
            {**t.to_json(), "spend": self._spend(f"team:{t.name}", t.policy.budget)}
            for t in self.store.list_teams()
        ]
        keys = [
            {**k.to_json(), "spend": self._spend(f"key:{k.id}", k.policy.budget)}
            for k in self.store.list_keys()
        ]
        return {"object": "tenancy.overview", "teams": teams, "keys": keys}

    def _spend(self, scope: str, budget: Any) -> dict[str, Any]:
        now = time.time()
        total = self.store.spent(scope, 0.0, float("inf"))
        out: dict[str, Any] = {"total_usd": round(total, 6)}
        if budget is not None:
            start, end = budget.window(now)
            used = self.store.spent(scope, start, end)
            out.update(
                period=budget.period,
                period_usd=round(used, 6),
                left_usd=round(max(0.0, budget.usd - used), 6),
            )
        return out


def _policy_body(current: Mapping[str, Any]) -> dict[str, Any]:
    body = {k: current[k] for k in ("budget", "rpm", "tpm", "parallel", "models")}
    if not body["models"]:
        body["models"] = None
    return body
