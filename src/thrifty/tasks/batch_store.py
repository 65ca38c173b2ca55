"""Durable batch state in SQLite (WAL): batches, their requests, uploaded files.

Every finished request is committed here before its line is written to the
output file, so a job killed at any moment (even SIGKILL) resumes by running
only the requests still ``pending``, and its output can be rebuilt from here.
One database holds one CLI job, or all of a server's batches and files.

A store that cannot be opened (read-only, disk full, locked) never stops the
server: every use raises :class:`~thrifty.errors.StorageUnavailable` (503,
naming the cause) while a background thread retries with a bounded backoff.
Only a file SQLite reports as damaged, confirmed by ``quick_check``, is moved
aside and replaced.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson

from ..errors import StorageUnavailable
from ..storage import Backoff, Outage, cause, open_sqlite, wal_setup
from .batch_format import ParsedBatch

log = logging.getLogger("thrifty.tasks")

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

    def __init__(self, path: str, backoff: Backoff | None = None) -> None:
        self.path = path
        self.set_aside: str | None = None
        self.outage = Outage("batch store", log, backoff)
        self._db: sqlite3.Connection | None = None
        self._why = ""  # the cause, without the path, for clients
        self._closed = threading.Event()
        self._retry: threading.Thread | None = None
        if not self._open():
            self._retry = threading.Thread(
                target=self._reopen, name="thrifty-batch-store-reopen", daemon=True
            )
            self._retry.start()

    def _open(self) -> bool:
        try:
            self._db, self.set_aside = open_sqlite(
                "batch store",
                self.path,
                wal_setup(_SCHEMA, [(t, "owner", "TEXT NOT NULL DEFAULT ''") for t in _OWNER_ADDED]),
            )
        except StorageUnavailable as exc:
            self._why = cause(exc.__cause__) if exc.__cause__ is not None else exc.message
            self.outage.failed(exc.message)
            return False
        self.outage.recovered()
        return True

    def _reopen(self) -> None:
        while not self._closed.wait(self.outage.backoff.wait()):
            if self._open():
                if self._closed.is_set():  # closed while opening: do not leak the connection
                    self.close()
                return

    @property
    def db(self) -> sqlite3.Connection:
        """The connection; raises StorageUnavailable (503) while the file cannot be opened."""
        db = self._db
        if db is None:
            raise StorageUnavailable(
                f"The batch store cannot be opened now: {self._why}. Batches and files are unavailable "
                "until it can; try again later."
            )
        return db

    def ensure_open(self) -> None:
        """Raise StorageUnavailable (503, naming the cause) while the file cannot be opened."""
        self.db  # noqa: B018 -- the property raises

    def degraded(self) -> list[str]:
        """Why the store is unavailable now (empty when it is open)."""
        problem = self.outage.problem
        return [] if problem is None else [f"{problem}; batch and file routes answer 503"]

    def close(self) -> None:
        self._closed.set()
        db, self._db = self._db, None
        if db is not None:
            db.close()

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
                (
                    batch_id,
                    data.get("status", "validating"),
                    int(time.time()),
                    orjson.dumps(data).decode(),
                    owner,
                ),
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

    def batches(
        self, *, limit: int = 20, after: str | None = None, owner: str | None = None
    ) -> list[dict[str, Any]]:
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
