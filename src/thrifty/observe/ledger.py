"""The SQLite usage ledger: one row per request, plus the feedback table.

Rows arrive in batches from the observer's writer thread, each batch one
transaction, in WAL mode so readers (``thrifty usage``, feedback lookups)
never block the writer. A request's extra upstream calls (a cascade's
verifier calls and escalated answers) are rows of their own with a
``purpose`` and their request's id in ``parent_id``. With ``ledger.log_prompts``
the ``prompts`` table keeps, per request, the text the router reads, written in
the same transaction as its row; no HTTP route reads it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

from ..storage import open_sqlite, wal_setup
from .tally import COLUMNS, Row

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT NOT NULL, ts REAL NOT NULL, model TEXT, deployment TEXT, tier TEXT,
    route TEXT, cache TEXT, stream INTEGER, status INTEGER, error_type TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER, cached_tokens INTEGER,
    latency_s REAL, ttft_s REAL, overhead_s REAL, attempts INTEGER, api_key TEXT, tenant TEXT,
    cost_usd REAL, cost_top_usd REAL, cost_nocache_usd REAL, priced INTEGER, annotations TEXT,
    team TEXT NOT NULL DEFAULT '', end_user TEXT NOT NULL DEFAULT '',
    tokens_saved INTEGER NOT NULL DEFAULT 0, cache_key TEXT NOT NULL DEFAULT '',
    purpose TEXT NOT NULL DEFAULT '', parent_id TEXT NOT NULL DEFAULT '', verdict REAL
);
CREATE INDEX IF NOT EXISTS requests_id ON requests (request_id);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY, response_id TEXT NOT NULL, ts REAL NOT NULL, rating INTEGER NOT NULL,
    comment TEXT, corrected_answer TEXT, model TEXT, tier TEXT, route TEXT, owner TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS feedback_response ON feedback (response_id);
CREATE TABLE IF NOT EXISTS prompts (
    request_id TEXT PRIMARY KEY, ts REAL NOT NULL, api_key TEXT NOT NULL DEFAULT '', text TEXT NOT NULL
);
"""
# columns added after a table was first created: (table, column, definition)
_ADDED = (
    ("feedback", "owner", "TEXT NOT NULL DEFAULT ''"),
    ("requests", "team", "TEXT NOT NULL DEFAULT ''"),
    ("requests", "end_user", "TEXT NOT NULL DEFAULT ''"),
    ("requests", "tokens_saved", "INTEGER NOT NULL DEFAULT 0"),
    ("requests", "cache_key", "TEXT NOT NULL DEFAULT ''"),  # the exact cache key, to warm the cache
    ("requests", "purpose", "TEXT NOT NULL DEFAULT ''"),  # a call made besides the answer: why
    ("requests", "parent_id", "TEXT NOT NULL DEFAULT ''"),  # ... and for which request
    ("requests", "verdict", "REAL"),  # a cascade verifier's verdict on the answer
)
_INSERT = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
_INSERT_PROMPT = "INSERT OR IGNORE INTO prompts (request_id, ts, api_key, text) VALUES (?, ?, ?, ?)"
PromptRow = tuple[str, float, str, str]  # request id, time, owner's key id, the routed text


class Ledger:
    """A ledger file with one connection, used under a lock from any thread.

    Opening raises :class:`~thrifty.errors.StorageUnavailable` (naming the cause)
    when the file cannot be opened now; only a damaged file is moved aside.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.db, self.set_aside = open_sqlite("ledger", path, wal_setup(SCHEMA, _ADDED), timeout=10.0)
        self.lock = threading.Lock()
        self.written = 0

    def write(self, rows: list[Row], prompts: Sequence[PromptRow] = ()) -> None:
        """One transaction: the rows, and the prompt log's rows of the same requests."""
        if not rows and not prompts:
            return
        with self.lock:
            self.db.execute("BEGIN")
            try:
                self.db.executemany(_INSERT, rows)
                if prompts:
                    self.db.executemany(_INSERT_PROMPT, prompts)
                self.db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already (disk full)
                    self.db.execute("ROLLBACK")
                raise
            self.written += len(rows)

    def find(self, request_id: str) -> dict[str, Any] | None:
        with self.lock:
            cur = self.db.execute(
                "SELECT model, deployment, tier, route, status, api_key FROM requests"
                " WHERE request_id = ? AND purpose = '' LIMIT 1",
                (request_id,),
            )
            row = cur.fetchone()
        if row is None:
            return None
        return dict(zip(("model", "deployment", "tier", "route", "status", "api_key"), row, strict=True))

    def add_feedback(self, values: dict[str, Any]) -> int:
        """Store one rating; ``values["owner"]`` is the rating key's id ("" without keys)."""
        keys = (
            "response_id",
            "ts",
            "rating",
            "comment",
            "corrected_answer",
            "model",
            "tier",
            "route",
            "owner",
        )
        values = {**values, "owner": values.get("owner") or ""}
        with self.lock:
            cur = self.db.execute(
                f"INSERT INTO feedback ({', '.join(keys)}) VALUES ({', '.join('?' * len(keys))})",
                tuple(values.get(k) for k in keys),
            )
            return int(cur.lastrowid or 0)

    def feedback(self, response_id: str, owner: str | None = None) -> list[dict[str, Any]]:
        """The ratings of one response, oldest first; only ``owner``'s when given."""
        sql = "SELECT id, ts, rating, comment, corrected_answer, model, tier, route FROM feedback WHERE response_id = ?"
        args: tuple[str, ...] = (response_id,)
        if owner is not None:
            sql += " AND owner = ?"
            args += (owner,)
        with self.lock:
            cur = self.db.execute(sql + " ORDER BY id", args)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def close(self) -> None:
        with self.lock:
            self.db.close()
