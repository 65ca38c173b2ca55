"""The SQLite usage ledger: one row per request, plus the feedback table.

Rows arrive in batches from the observer's writer thread, each batch one
transaction, in WAL mode so readers (``thrifty usage``, feedback lookups)
never block the writer.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from .tally import COLUMNS, Row

log = logging.getLogger("thrifty.observe")

SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT NOT NULL, ts REAL NOT NULL, model TEXT, deployment TEXT, tier TEXT,
    route TEXT, cache TEXT, stream INTEGER, status INTEGER, error_type TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER, cached_tokens INTEGER,
    latency_s REAL, ttft_s REAL, overhead_s REAL, attempts INTEGER, api_key TEXT, tenant TEXT,
    cost_usd REAL, cost_top_usd REAL, cost_nocache_usd REAL, priced INTEGER, annotations TEXT
);
CREATE INDEX IF NOT EXISTS requests_id ON requests (request_id);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY, response_id TEXT NOT NULL, ts REAL NOT NULL, rating INTEGER NOT NULL,
    comment TEXT, corrected_answer TEXT, model TEXT, tier TEXT, route TEXT, owner TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS feedback_response ON feedback (response_id);
"""
# columns added after a table was first created: (table, column, definition)
_ADDED = (("feedback", "owner", "TEXT NOT NULL DEFAULT ''"),)
_INSERT = f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


def connect(path: str) -> sqlite3.Connection:
    """Open (creating if needed) a ledger database in WAL mode."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10.0)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(SCHEMA)
    for table, column, definition in _ADDED:
        if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
    return db


def set_aside(path: str) -> str:
    """Rename an unreadable ledger (and its WAL files) out of the way; never delete it."""
    kept = f"{path}.corrupt-{int(time.time())}"
    for suffix in ("", "-wal", "-shm"):
        if Path(path + suffix).exists():
            os.replace(path + suffix, kept + suffix)
    return kept


class Ledger:
    """A ledger file with one connection, used under a lock from any thread."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.db = connect(path)
        except sqlite3.DatabaseError as exc:
            if path == ":memory:" or not Path(path).exists():
                raise
            kept = set_aside(path)
            log.error("the ledger %s is unreadable (%s); moved it to %s and started a new one", path, exc, kept)
            self.db = connect(path)
        self.lock = threading.Lock()
        self.written = 0

    def write(self, rows: list[Row]) -> None:
        if not rows:
            return
        with self.lock:
            self.db.execute("BEGIN")
            try:
                self.db.executemany(_INSERT, rows)
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.written += len(rows)

    def find(self, request_id: str) -> dict[str, Any] | None:
        with self.lock:
            cur = self.db.execute(
                "SELECT model, deployment, tier, route, status, api_key FROM requests WHERE request_id = ? LIMIT 1",
                (request_id,),
            )
            row = cur.fetchone()
        if row is None:
            return None
        return dict(zip(("model", "deployment", "tier", "route", "status", "api_key"), row, strict=True))

    def add_feedback(self, values: dict[str, Any]) -> int:
        """Store one rating; ``values["owner"]`` is the rating key's id ("" without keys)."""
        keys = ("response_id", "ts", "rating", "comment", "corrected_answer", "model", "tier", "route", "owner")
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
