"""Opening the SQLite files thrifty keeps (ledger, cache L2, batch store), and living without them.

An error while opening is translated by its SQLite error code (or its errno),
never by its text, into one of two outcomes:

- **damaged**: SQLite says the file is not a database or is corrupt
  (``SQLITE_NOTADB``, ``SQLITE_CORRUPT``) *and* a read-only ``PRAGMA
  quick_check`` confirms it. Only then is the file renamed aside
  (``<name>.corrupt-<time>``, never deleted) and a fresh one created.
- **unavailable**: anything else (read-only, cannot open, disk full, locked,
  I/O error, permission denied). The file is left alone; the owner raises
  :class:`~thrifty.errors.StorageUnavailable` naming the cause, serves without
  the store, reports itself degraded and tries again with a bounded backoff.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

from .errors import StorageUnavailable

log = logging.getLogger("thrifty.storage")

DAMAGED = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_WORDS = {
    sqlite3.SQLITE_READONLY: "read-only",
    sqlite3.SQLITE_CANTOPEN: "cannot open the file",
    sqlite3.SQLITE_FULL: "disk full",
    sqlite3.SQLITE_BUSY: "locked by another process",
    sqlite3.SQLITE_LOCKED: "locked",
    sqlite3.SQLITE_PERM: "permission denied",
    sqlite3.SQLITE_IOERR: "I/O error",
    sqlite3.SQLITE_NOMEM: "out of memory",
    sqlite3.SQLITE_CORRUPT: "damaged",
    sqlite3.SQLITE_NOTADB: "not a database",
}


@runtime_checkable
class Degradable(Protocol):
    """A part that can keep serving without one of its resources, and says so."""

    def degraded(self) -> list[str]:
        """Why this part runs degraded now, one sentence each (empty: it does not)."""
        ...


def _code(exc: BaseException) -> int | None:
    """SQLite's primary result code of ``exc`` (extended codes folded), if it has one."""
    if not isinstance(exc, sqlite3.Error):
        return None
    # set by the sqlite3 module on every error SQLite reports; absent on errors raised by hand
    code = getattr(exc, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def is_damaged(exc: BaseException) -> bool:
    """True when SQLite reported the file as corrupt or not a database."""
    return _code(exc) in DAMAGED


def cause(exc: BaseException) -> str:
    """A short reason for an open or write failure, e.g. ``read-only (SQLITE_READONLY: ...)``; never a path."""
    code = _code(exc)
    if isinstance(exc, sqlite3.Error) and code is not None:
        return f"{_WORDS.get(code, 'SQLite error')} ({getattr(exc, 'sqlite_errorname', code)}: {exc})"
    if isinstance(exc, OSError):  # the message repeats the path; callers name the file themselves
        return exc.strerror or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def confirmed_damaged(path: str) -> bool:
    """A read-only look at ``path``: True only if it is not a database or fails ``quick_check``."""
    uri = f"file:{urllib.parse.quote(path)}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return is_damaged(exc)
    return rows != [("ok",)]


def set_aside(path: str) -> str:
    """Rename a damaged file (and its WAL files) out of the way; never delete it."""
    kept = f"{path}.corrupt-{int(time.time())}"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, kept + suffix)
    return kept


def open_sqlite(
    what: str,
    path: str,
    setup: Callable[[sqlite3.Connection], None],
    *,
    timeout: float = 5.0,
) -> tuple[sqlite3.Connection, str | None]:
    """Open (creating) ``path`` and run ``setup`` on it.

    Returns the connection and, when the old file was damaged, where it was
    moved. Raises :class:`StorageUnavailable` naming the cause otherwise.
    """
    try:
        return _connect(path, setup, timeout), None
    except (sqlite3.Error, OSError) as exc:
        if path == ":memory:" or not is_damaged(exc) or not confirmed_damaged(path):
            raise StorageUnavailable(f"the {what} {path} cannot be opened: {cause(exc)}") from exc
        damage = exc
    try:
        kept = set_aside(path)
    except OSError as exc:
        raise StorageUnavailable(
            f"the {what} {path} is damaged and cannot be moved aside: {cause(exc)}"
        ) from exc
    log.error(
        "the %s %s is damaged (%s); moved it to %s and started a new one", what, path, cause(damage), kept
    )
    try:
        return _connect(path, setup, timeout), kept
    except (sqlite3.Error, OSError) as exc:
        raise StorageUnavailable(f"the {what} {path} cannot be created: {cause(exc)}") from exc


def _connect(path: str, setup: Callable[[sqlite3.Connection], None], timeout: float) -> sqlite3.Connection:
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout)
    try:
        setup(db)
    except BaseException:
        db.close()
        raise
    return db


def wal_setup(
    schema: str, added: Sequence[tuple[str, str, str]] = ()
) -> Callable[[sqlite3.Connection], None]:
    """The usual setup: WAL journal, NORMAL sync, ``schema`` created if missing, and the
    ``(table, column, definition)`` columns added since a file was first made."""

    def setup(db: sqlite3.Connection) -> None:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(schema)
        for table, column, definition in added:
            if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    return setup


class Backoff:
    """When to try again: ``first`` seconds after a failure, doubling up to ``most``."""

    def __init__(
        self, first: float = 0.5, most: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.first = first
        self.most = most
        self.clock = clock
        self.delay = first
        self.next_at = 0.0

    def due(self) -> bool:
        return self.clock() >= self.next_at

    def wait(self) -> float:
        """Seconds until the next try is due (0 when it is due now)."""
        return max(0.0, self.next_at - self.clock())

    def failed(self) -> None:
        self.next_at = self.clock() + self.delay
        self.delay = min(self.most, self.delay * 2)

    def reset(self) -> None:
        self.delay = self.first
        self.next_at = 0.0


class Outage:
    """Whether a store is down, why, and when to try it again; logs each change once."""

    def __init__(self, what: str, logger: logging.Logger, backoff: Backoff | None = None) -> None:
        self.what = what
        self.log = logger
        self.backoff = backoff or Backoff()
        self.problem: str | None = None

    def failed(self, problem: str) -> None:
        if self.problem is None:
            self.log.error("%s; serving without it and retrying in the background", problem)
        self.problem = problem
        self.backoff.failed()

    def recovered(self) -> None:
        if self.problem is not None:
            self.log.warning("the %s works again", self.what)
        self.problem = None
        self.backoff.reset()
