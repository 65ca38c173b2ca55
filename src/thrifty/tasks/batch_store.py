"""Durable batch state in SQLite (WAL): batches, their requests, uploaded files.

Every finished request is committed here before its line is written to the
output file, so a job killed at any moment (even SIGKILL) resumes by running
only the requests still ``pending``, and its output can be rebuilt from here.
One database holds one CLI job, or all of a server's batches and files.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import orjson

from .batch_format import ParsedBatch

PENDING, OK, FAILED, INVALID = "pending", "ok", "failed", "invalid"
UNFINISHED = ("validating", "in_progress", "finalizing", "cancelling")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, created_at INTEGER NOT NULL, data TEXT NOT NULL,
    owner TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS requests (
    batch_id TEXT NOT NULL, idx INTEGER NOT NULL, line INTEGER NOT NULL, custom_id TEXT,
    body TEXT, state TEXT NOT NULL, result TEXT, cost REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (batch_id, idx));
CREATE INDEX IF NOT EXISTS requests_by_state ON requests (batch_id, state);
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, data TEXT NOT NULL, owner TEXT NOT NULL DEFAULT '');
"""
# The owner of a batch or file is the id of the API key that created it ("" without keys).
_OWNER_ADDED = ("batches", "files")  # tables made before owners were stored get the column


class BatchStore:
    """A small synchronous DAO; every write is its own committed transaction."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)
        for table in _OWNER_ADDED:
            if "owner" not in {row[1] for row in self.db.execute(f"PRAGMA table_info({table})")}:
                self.db.execute(f"ALTER TABLE {table} ADD COLUMN owner TEXT NOT NULL DEFAULT ''")

    def close(self) -> None:
        self.db.close()

    # -- batches ---------------------------------------------------------------

    def create_batch(self, batch_id: str, data: dict[str, Any], parsed: ParsedBatch, owner: str = "") -> None:
        """Store a batch and all its lines in one transaction."""
        rows: list[tuple[Any, ...]] = [
            (batch_id, idx, r.line, r.custom_id, orjson.dumps(r.body).decode(), PENDING, None)
            for idx, r in enumerate(parsed.requests)
        ]
        base = len(rows)
        rows += [
            (batch_id, base + i, b.line, b.custom_id, None, INVALID, orjson.dumps(b.record()).decode())
            for i, b in enumerate(parsed.bad)
        ]
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(
                "INSERT INTO batches (id, status, created_at, data, owner) VALUES (?, ?, ?, ?, ?)",
                (batch_id, data.get("status", "validating"), int(time.time()), orjson.dumps(data).decode(), owner),
            )
            self.db.executemany(
                "INSERT INTO requests (batch_id, idx, line, custom_id, body, state, result) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )

    def batch(self, batch_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT data FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return None if row is None else _object(row[0])

    def batch_owner(self, batch_id: str) -> str | None:
        """The key id that created the batch; None when there is no such batch."""
        row = self.db.execute("SELECT owner FROM batches WHERE id = ?", (batch_id,)).fetchone()
        return None if row is None else str(row[0])

    def batches(self, *, limit: int = 20, after: str | None = None, owner: str | None = None) -> list[dict[str, Any]]:
        """Newest first, as OpenAI lists them; ``after`` is a batch id; only ``owner``'s when given."""
        sql = "SELECT data FROM batches"
        where: list[str] = []
        args: list[Any] = []
        if after is not None:
            where.append("rowid < (SELECT rowid FROM batches WHERE id = ?)")
            args.append(after)
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY rowid DESC LIMIT ?"
        args.append(limit)
        return [_object(row[0]) for row in self.db.execute(sql, args)]

    def save_batch(self, data: dict[str, Any]) -> None:
        self.db.execute(
            "UPDATE batches SET status = ?, data = ? WHERE id = ?",
            (data["status"], orjson.dumps(data).decode(), data["id"]),
        )

    def unfinished(self) -> list[str]:
        marks = ",".join("?" * len(UNFINISHED))
        rows = self.db.execute(f"SELECT id FROM batches WHERE status IN ({marks}) ORDER BY rowid", UNFINISHED)
        return [row[0] for row in rows]

    # -- requests --------------------------------------------------------------

    def pending(self, batch_id: str) -> list[tuple[int, str, dict[str, Any]]]:
        rows = self.db.execute(
            "SELECT idx, custom_id, body FROM requests WHERE batch_id = ? AND state = ? ORDER BY idx",
            (batch_id, PENDING),
        )
        return [(idx, cid, _object(body)) for idx, cid, body in rows]

    def record(self, batch_id: str, idx: int, state: str, result: dict[str, Any], cost: float = 0.0) -> None:
        self.db.execute(
            "UPDATE requests SET state = ?, result = ?, cost = ? WHERE batch_id = ? AND idx = ?",
            (state, orjson.dumps(result).decode(), cost, batch_id, idx),
        )

    def results(self, batch_id: str, *states: str) -> Iterator[bytes]:
        """The stored result lines in the given states, in input order."""
        marks = ",".join("?" * len(states))
        rows = self.db.execute(
            f"SELECT result FROM requests WHERE batch_id = ? AND state IN ({marks}) ORDER BY idx",
            (batch_id, *states),
        )
        for (result,) in rows:
            yield result.encode() + b"\n"

    def counts(self, batch_id: str) -> dict[str, Any]:
        rows = self.db.execute(
            "SELECT state, COUNT(*), SUM(cost) FROM requests WHERE batch_id = ? GROUP BY state", (batch_id,)
        ).fetchall()
        by_state = {state: (n, cost or 0.0) for state, n, cost in rows}
        ok, failed = by_state.get(OK, (0, 0.0)), by_state.get(FAILED, (0, 0.0))
        invalid = by_state.get(INVALID, (0, 0.0))[0]
        pending = by_state.get(PENDING, (0, 0.0))[0]
        return {
            "total": ok[0] + failed[0] + invalid + pending,
            "completed": ok[0],
            "failed": failed[0] + invalid,
            "pending": pending,
            "cost": ok[1] + failed[1],
        }

    # -- files -----------------------------------------------------------------

    def add_file(self, data: dict[str, Any], owner: str = "") -> None:
        self.db.execute(
            "INSERT INTO files (id, created_at, data, owner) VALUES (?, ?, ?, ?)",
            (data["id"], data["created_at"], orjson.dumps(data).decode(), owner),
        )

    def file(self, file_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT data FROM files WHERE id = ?", (file_id,)).fetchone()
        return None if row is None else _object(row[0])

    def file_owner(self, file_id: str) -> str | None:
        """The key id that uploaded (or whose batch produced) the file; None when there is none."""
        row = self.db.execute("SELECT owner FROM files WHERE id = ?", (file_id,)).fetchone()
        return None if row is None else str(row[0])


def _object(text: str | bytes) -> dict[str, Any]:
    data = orjson.loads(text)
    assert isinstance(data, dict)
    return data
