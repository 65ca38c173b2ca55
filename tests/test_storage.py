"""Opening thrifty's SQLite files: only confirmed damage moves a file aside; the rest is an outage."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from thrifty.errors import StorageUnavailable
from thrifty.storage import Backoff, Outage, cause, is_damaged, open_sqlite, wal_setup

SCHEMA = "CREATE TABLE IF NOT EXISTS t (x INTEGER);"


def test_backoff_doubles_from_first_up_to_most() -> None:
    now = [0.0]
    backoff = Backoff(first=1.0, most=4.0, clock=lambda: now[0])
    assert backoff.due()
    waits = []
    for _ in range(5):
        backoff.failed()
        waits.append(backoff.wait())
        now[0] += backoff.wait()
        assert backoff.due()
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    backoff.failed()
    assert backoff.wait() == 1.0


def test_errors_are_told_apart_by_sqlite_code_not_text(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    sqlite3.connect(path).executescript(SCHEMA)
    read_only = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(sqlite3.OperationalError) as raised:
        read_only.execute("INSERT INTO t VALUES (1)")
    assert not is_damaged(raised.value) and cause(raised.value).startswith("read-only (SQLITE_READONLY")
    (tmp_path / "junk.db").write_bytes(b"not a database at all" * 100)
    with pytest.raises(sqlite3.DatabaseError) as damaged:
        sqlite3.connect(tmp_path / "junk.db").execute("SELECT * FROM sqlite_master")
    assert is_damaged(damaged.value) and cause(damaged.value).startswith("not a database")
    # the same words without SQLite's code are not trusted as damage
    assert not is_damaged(sqlite3.DatabaseError("file is not a database"))


def test_a_damage_report_that_quick_check_does_not_confirm_leaves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    sqlite3.connect(path).executescript(SCHEMA + "INSERT INTO t VALUES (7);")

    def flaky_setup(db: sqlite3.Connection) -> None:
        error = sqlite3.DatabaseError("database disk image is malformed")
        error.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
        raise error

    with pytest.raises(StorageUnavailable, match="cannot be opened: damaged"):
        open_sqlite("test store", str(path), flaky_setup)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.db"]
    db, kept = open_sqlite("test store", str(path), wal_setup(SCHEMA))
    assert kept is None and db.execute("SELECT x FROM t").fetchall() == [(7,)]
    db.close()


def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outage = Outage("test store", logging.getLogger("thrifty.test"), Backoff(first=0.0))
    for _ in range(3):
        outage.failed("the test store cannot be opened: disk full")
    outage.recovered()
    outage.recovered()
    assert [r.getMessage() for r in caplog.records] == [
        "the test store cannot be opened: disk full; serving without it and retrying in the background",
        "the test store works again",
    ]
