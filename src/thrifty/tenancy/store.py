"""Keys, teams and spend in a real database: SQLite on one machine, PostgreSQL when shared.

One class, two dialects (placeholders and column types differ; the SQL does not).
Every method is synchronous and short; the service runs them on its own thread,
never on the event loop. Secrets are never stored: only their SHA-256.

    store = KeyStore.open("sqlite:///var/thrifty/tenancy.db")     # or postgresql://...
    store.create_team(Team("search", Policy(budget=Budget(50, "month"))))
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import InvalidRequest, NotFound
from .policy import Budget, Limits, Policy

SECRET_PREFIX = "tk-"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS thrifty_teams (
    name TEXT PRIMARY KEY, budget_usd {real}, budget_period TEXT,
    rpm BIGINT, tpm BIGINT, parallel BIGINT, models TEXT NOT NULL, created_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS thrifty_keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, team TEXT, role TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL,
    budget_usd {real}, budget_period TEXT, rpm BIGINT, tpm BIGINT, parallel BIGINT,
    models TEXT NOT NULL, expires_at {real}, revoked_at {real}, created_at {real} NOT NULL,
    updated_at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS thrifty_spend (
    scope TEXT NOT NULL, day {real} NOT NULL, usd {real} NOT NULL, requests BIGINT NOT NULL,
    PRIMARY KEY (scope, day)
);
CREATE TABLE IF NOT EXISTS thrifty_sessions (
    token_hash TEXT PRIMARY KEY, key_id TEXT NOT NULL, expires_at {real} NOT NULL
);
"""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Team:
    name: str
    policy: Policy = field(default_factory=Policy)
    created_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "team",
            "name": self.name,
            "created_at": int(self.created_at),
            **_policy_json(self.policy),
        }


@dataclass(frozen=True)
class KeyRecord:
    """A virtual key as stored: everything but the secret."""

    id: str
    name: str
    team: str | None
    role: str  # "client" or "admin"
    prefix: str  # the first characters of the secret, to recognise it in lists
    policy: Policy = field(default_factory=Policy)
    expires_at: float | None = None
    revoked_at: float | None = None
    created_at: float = 0.0

    def usable(self, now: float) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "key",
            "id": self.id,
            "name": self.name,
            "team": self.team,
            "role": self.role,
            "prefix": self.prefix,
            **_policy_json(self.policy),
            "expires_at": None if self.expires_at is None else int(self.expires_at),
            "revoked_at": None if self.revoked_at is None else int(self.revoked_at),
            "created_at": int(self.created_at),
        }


def _policy_json(policy: Policy) -> dict[str, Any]:
    limits = policy.limits
    return {
        "budget": None if policy.budget is None else str(policy.budget),
        "rpm": limits.rpm,
        "tpm": limits.tpm,
        "parallel": limits.parallel,
        "models": list(policy.models),
    }


class KeyStore:
    """Teams, keys and daily spend; SQLite or PostgreSQL."""

    def __init__(self, connect: Any, dialect: str) -> None:
        self._connect = connect
        self.dialect = dialect
        self._conn: Any = None
        self._lock = threading.Lock()
        self._ph = "?" if dialect == "sqlite" else "%s"

    @classmethod
    def open(cls, url: str) -> KeyStore:
        """``sqlite:///path`` (or a plain path) or ``postgresql://user@host:port/db``."""
        if url.startswith(("postgresql://", "postgres://")):

            def connect_pg() -> Any:
                import psycopg

                return psycopg.connect(url, autocommit=True)

            store = cls(connect_pg, "postgresql")
        else:
            path = url.removeprefix("sqlite:///") if url.startswith("sqlite:///") else url

            def connect_sqlite() -> Any:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
                conn.execute("PRAGMA journal_mode=WAL")
                return conn

            store = cls(connect_sqlite, "sqlite")
        return store

    def _setup(self, conn: Any) -> None:
        real = "REAL" if self.dialect == "sqlite" else "DOUBLE PRECISION"
        cur = conn.cursor()
        try:
            for statement in _SCHEMA.format(real=real).split(";"):
                if statement.strip():
                    cur.execute(statement)
        finally:
            cur.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        with self._lock:
            if self._conn is None:  # connect (and create the tables) on first use, not at open
                conn = self._connect()
                try:
                    self._setup(conn)
                except BaseException:
                    conn.close()
                    raise
                self._conn = conn
            cur = self._conn.cursor()
            try:
                yield cur
            finally:
                cur.close()

    def _sql(self, text: str) -> str:
        return text.replace("?", self._ph)

    def _exec(self, text: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._cursor() as cur:
            cur.execute(self._sql(text), tuple(args))
            return list(cur.fetchall()) if cur.description else []

    def _count(self, text: str, args: Sequence[Any]) -> int:
        with self._cursor() as cur:
            cur.execute(self._sql(text), tuple(args))
            return int(cur.rowcount)

    # -- teams ----------------------------------------------------------------

    def create_team(self, team: Team) -> Team:
        team = replace(team, created_at=team.created_at or time.time())
        if self.get_team(team.name, missing_ok=True) is not None:
            raise InvalidRequest(
                f"A team named {team.name!r} already exists.", param="name", code="duplicate"
            )
        self._exec(
            "INSERT INTO thrifty_teams VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (team.name, *_policy_row(team.policy), team.created_at),
        )
        return team

    def update_team(self, name: str, policy: Policy) -> Team:
        changed = self._count(
            "UPDATE thrifty_teams SET budget_usd = ?, budget_period = ?, rpm = ?, tpm = ?, parallel = ?, "
            "models = ? WHERE name = ?",
            (*_policy_row(policy), name),
        )
        if not changed:
            raise NotFound(f"No team named {name!r}.", param="team")
        return self.get_team(name)  # type: ignore[return-value]

    def get_team(self, name: str, *, missing_ok: bool = False) -> Team | None:
        rows = self._exec("SELECT * FROM thrifty_teams WHERE name = ?", (name,))
        if not rows:
            if missing_ok:
                return None
            raise NotFound(f"No team named {name!r}.", param="team")
        row = rows[0]
        return Team(row[0], _policy(row[1:7]), row[7])

    def list_teams(self) -> list[Team]:
        return [
            Team(r[0], _policy(r[1:7]), r[7]) for r in self._exec("SELECT * FROM thrifty_teams ORDER BY name")
        ]

    # -- keys -------------------------------------------------------------------

    def create_key(
        self,
        name: str,
        *,
        team: str | None = None,
        role: str = "client",
        policy: Policy | None = None,
        expires_at: float | None = None,
        secret: str | None = None,
    ) -> tuple[KeyRecord, str]:
        """A new key and its secret (shown once; only its hash is kept)."""
        if role not in ("client", "admin"):
            raise InvalidRequest(f"'role' must be 'client' or 'admin', got {role!r}.", param="role")
        if team is not None:
            self.get_team(team)  # NotFound names it
        if self._exec("SELECT id FROM thrifty_keys WHERE name = ?", (name,)):
            raise InvalidRequest(f"A key named {name!r} already exists.", param="name", code="duplicate")
        secret = secret or new_secret()
        now = time.time()
        record = KeyRecord(
            id="key_" + secrets.token_hex(8),
            name=name,
            team=team,
            role=role,
            prefix=secret[:7],
            policy=policy or Policy(),
            expires_at=expires_at,
            created_at=now,
        )
        self._exec(
            "INSERT INTO thrifty_keys VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                record.id,
                name,
                team,
                role,
                hash_secret(secret),
                record.prefix,
                *_policy_row(record.policy),
                expires_at,
                None,
                now,
                now,
            ),
        )
        return record, secret

    def get_key(self, key_id: str) -> KeyRecord:
        rows = self._exec(f"SELECT {_KEY_COLUMNS} FROM thrifty_keys WHERE id = ?", (key_id,))
        if not rows:
            raise NotFound(f"No key with id {key_id!r}.", param="id")
        return _key(rows[0])

    def find(self, secret: str) -> KeyRecord | None:
        """The key whose secret this is, revoked or not; None if there is none."""
        rows = self._exec(
            f"SELECT {_KEY_COLUMNS} FROM thrifty_keys WHERE secret_hash = ?", (hash_secret(secret),)
        )
        return _key(rows[0]) if rows else None

    def list_keys(self, team: str | None = None) -> list[KeyRecord]:
        if team is None:
            rows = self._exec(f"SELECT {_KEY_COLUMNS} FROM thrifty_keys ORDER BY created_at")
        else:
            rows = self._exec(
                f"SELECT {_KEY_COLUMNS} FROM thrifty_keys WHERE team = ? ORDER BY created_at", (team,)
            )
        return [_key(r) for r in rows]

    def update_key(self, key_id: str, policy: Policy, expires_at: float | None) -> KeyRecord:
        changed = self._count(
            "UPDATE thrifty_keys SET budget_usd = ?, budget_period = ?, rpm = ?, tpm = ?, parallel = ?, "
            "models = ?, expires_at = ?, updated_at = ? WHERE id = ?",
            (*_policy_row(policy), expires_at, time.time(), key_id),
        )
        if not changed:
            raise NotFound(f"No key with id {key_id!r}.", param="id")
        return self.get_key(key_id)

    def revoke(self, key_id: str) -> KeyRecord:
        now = time.time()
        changed = self._count(
            "UPDATE thrifty_keys SET revoked_at = COALESCE(revoked_at, ?), updated_at = ? WHERE id = ?",
            (now, now, key_id),
        )
        if not changed:
            raise NotFound(f"No key with id {key_id!r}.", param="id")
        return self.get_key(key_id)

    def rotate(self, key_id: str) -> tuple[KeyRecord, str]:
        """A new secret for the same key (same id, policy and spend); the old secret stops working."""
        secret = new_secret()
        changed = self._count(
            "UPDATE thrifty_keys SET secret_hash = ?, prefix = ?, updated_at = ? WHERE id = ? AND revoked_at IS NULL",
            (hash_secret(secret), secret[:7], time.time(), key_id),
        )
        if not changed:
            self.get_key(key_id)  # NotFound if it does not exist
            raise InvalidRequest(f"The key {key_id!r} is revoked; create a new one.", param="id")
        return self.get_key(key_id), secret

    # -- spend --------------------------------------------------------------------

    def add_spend(self, rows: Iterable[tuple[str, float, float, int]]) -> None:
        """Add ``(scope, day_start, usd, requests)`` rows (scope ``key:<id>``, ``team:<name>``...)."""
        with self._cursor() as cur:
            for scope, day, usd, requests in rows:
                cur.execute(
                    self._sql(
                        "INSERT INTO thrifty_spend VALUES (?, ?, ?, ?) ON CONFLICT (scope, day) DO UPDATE "
                        "SET usd = thrifty_spend.usd + excluded.usd, "
                        "requests = thrifty_spend.requests + excluded.requests"
                    ),
                    (scope, day, usd, requests),
                )

    def spent(self, scope: str, start: float, end: float) -> float:
        rows = self._exec(
            "SELECT COALESCE(SUM(usd), 0) FROM thrifty_spend WHERE scope = ? AND day >= ? AND day < ?",
            (scope, start, min(end, 1e18)),
        )
        return float(rows[0][0])

    # -- dashboard sessions, shared by every process on this database ---------------

    def add_session(self, token: str, key_id: str, expires_at: float) -> None:
        """Remember a dashboard session (only the token's hash) and forget expired ones."""
        with self._cursor() as cur:
            cur.execute(self._sql("DELETE FROM thrifty_sessions WHERE expires_at < ?"), (time.time(),))
            cur.execute(
                self._sql("INSERT INTO thrifty_sessions VALUES (?, ?, ?)"),
                (hash_secret(token), key_id, expires_at),
            )

    def find_session(self, token: str) -> tuple[str, float] | None:
        """The key id and expiry (unix time) of a live session, or None."""
        rows = self._exec(
            "SELECT key_id, expires_at FROM thrifty_sessions WHERE token_hash = ? AND expires_at > ?",
            (hash_secret(token), time.time()),
        )
        return (str(rows[0][0]), float(rows[0][1])) if rows else None

    def drop_session(self, token: str) -> None:
        self._exec("DELETE FROM thrifty_sessions WHERE token_hash = ?", (hash_secret(token),))

    def spend_by_scope(self, prefix: str, start: float = 0.0) -> dict[str, tuple[float, int]]:
        rows = self._exec(
            "SELECT scope, SUM(usd), SUM(requests) FROM thrifty_spend WHERE scope LIKE ? AND day >= ? GROUP BY scope",
            (prefix + "%", start),
        )
        return {r[0]: (float(r[1]), int(r[2])) for r in rows}


_KEY_COLUMNS = (
    "id, name, team, role, prefix, budget_usd, budget_period, rpm, tpm, parallel, models, "
    "expires_at, revoked_at, created_at"
)


def _policy_row(policy: Policy) -> tuple[Any, ...]:
    budget = policy.budget
    return (
        None if budget is None else budget.usd,
        None if budget is None else budget.period,
        policy.limits.rpm,
        policy.limits.tpm,
        policy.limits.parallel,
        json.dumps(list(policy.models)),
    )


def _policy(row: Sequence[Any]) -> Policy:
    usd, period, rpm, tpm, parallel, models = row
    return Policy(
        budget=None if usd is None else Budget(float(usd), period),
        limits=Limits(rpm=rpm, tpm=tpm, parallel=parallel),
        models=tuple(json.loads(models)),
    )


def _key(row: Sequence[Any]) -> KeyRecord:
    return KeyRecord(
        id=row[0],
        name=row[1],
        team=row[2],
        role=row[3],
        prefix=row[4],
        policy=_policy(row[5:11]),
        expires_at=row[11],
        revoked_at=row[12],
        created_at=row[13],
    )
