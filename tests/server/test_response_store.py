"""The response store: owners, expiry, writes that never hold a request, and a file that cannot open."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from thrifty.errors import NotFound, StorageUnavailable
from thrifty.server.response_store import ResponseStore, Stored


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _response(rid: str) -> dict[str, object]:
    return {"id": rid, "object": "response", "output": []}


async def test_a_response_is_read_back_by_its_owner_only_until_it_expires(tmp_path: Path) -> None:
    clock = Clock()
    store = ResponseStore(str(tmp_path / "responses.db"), ttl=60, clock=clock)
    try:
        store.put(_response("resp_1"), [{"type": "message", "role": "user", "content": "hi"}], owner="k1")
        got = await store.get("resp_1", "k1")  # at once: from memory or the file, whichever has it
        # the conversation is read back from the items and the output
        assert got.conversation == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]
        with pytest.raises(NotFound):
            await store.get("resp_1", "k2")
        clock.now += 61
        with pytest.raises(NotFound):
            await store.get("resp_1", "k1")
    finally:
        store.close()


async def test_rows_survive_a_restart_and_delete_forgets_them(tmp_path: Path) -> None:
    path = str(tmp_path / "responses.db")
    store = ResponseStore(path, ttl=60)
    store.put(_response("resp_2"), [], owner="k1")
    store.close()  # waits for the queued write
    again = ResponseStore(path, ttl=60)
    try:
        assert (await again.get("resp_2", "k1")).response["id"] == "resp_2"
        with pytest.raises(NotFound):
            await again.delete("resp_2", "k2")
        await again.delete("resp_2", "k1")
        with pytest.raises(NotFound):
            await again.get("resp_2", "k1")
        with pytest.raises(NotFound):
            await again.get("resp_\udc80", "k1")  # a lone surrogate in a path is a 404, not a 500
    finally:
        again.close()


async def test_a_store_that_cannot_open_is_a_503_and_reports_degraded(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data folder should be")
    store = ResponseStore(str(blocker / "responses.db"), ttl=60)
    try:
        with pytest.raises(StorageUnavailable) as caught:
            await store.get("resp_3", "k1")
        assert caught.value.status == 503
        assert store.degraded() and "response store" in store.degraded()[0]
        store.put(_response("resp_4"), [], owner="k1")  # answered already; the failed write is only logged
    finally:
        store.close()


async def test_a_response_deleted_before_its_row_is_written_stays_deleted(tmp_path: Path) -> None:
    path = str(tmp_path / "responses.db")
    store = ResponseStore(path, ttl=60)
    store.put(_response("resp_5"), [], owner="k1")
    await store.delete("resp_5", "k1")  # still queued: the batch is written FLUSH_AFTER later
    store.close()
    again = ResponseStore(path, ttl=60)
    try:
        with pytest.raises(NotFound):
            await again.get("resp_5", "k1")
    finally:
        again.close()


async def test_another_worker_finds_a_response_made_a_moment_ago(tmp_path: Path) -> None:
    path = str(tmp_path / "responses.db")
    made = ResponseStore(path, ttl=60, flush_after=3600)  # written only when closed
    asked = ResponseStore(path, ttl=60, settle=2.0)  # another worker on the same file
    reads: list[str] = []
    read = asked._read

    def counted(response_id: str) -> Stored | None:
        found = read(response_id)
        reads.append(response_id)  # after the read: the test writes the row only once this one missed
        return found

    asked._read = counted  # type: ignore[method-assign]
    rid = "resp_" + "ab" * 12
    try:
        made.put(_response(rid), [{"type": "message", "role": "user", "content": "hi"}], owner="k1")
        waiting = asyncio.ensure_future(asked.get(rid, "k1"))
        for _ in range(10_000):  # until its first read has missed
            if reads:
                break
            await asyncio.sleep(0.001)
        made.close()  # the other worker's batch is written now
        assert (await waiting).items == [{"type": "message", "role": "user", "content": "hi"}]
        assert reads == [rid, rid]  # it missed, waited, read again
        with pytest.raises(NotFound):
            await asked.get("not-ours", "k1")  # any other id misses at once
        assert len(reads) == 3
    finally:
        made.close()
        asked.close()


async def test_input_items_survive_a_restart_and_a_file_from_before_them_still_reads(tmp_path: Path) -> None:
    import sqlite3

    path = str(tmp_path / "responses.db")
    with sqlite3.connect(path) as old:  # the schema before input items were kept
        old.execute(
            "CREATE TABLE responses (id TEXT PRIMARY KEY, owner TEXT NOT NULL, created REAL NOT NULL, "
            "expires REAL NOT NULL, response BLOB NOT NULL, conversation BLOB NOT NULL)"
        )
        old.execute(
            "INSERT INTO responses VALUES ('resp_old', 'k1', 0, 9e99, ?, ?)",
            (b'{"id": "resp_old"}', b'[{"role": "user", "content": "then"}]'),
        )
    old.close()
    store = ResponseStore(path, ttl=60)
    items = [{"type": "message", "id": "msg_1", "role": "user", "content": []}]
    store.put(_response("resp_3"), items, owner="k1")
    old_row = await store.get("resp_old", "k1")
    assert old_row.items == [] and old_row.conversation == [{"role": "user", "content": "then"}]
    store.close()
    again = ResponseStore(path, ttl=60)
    try:
        assert (await again.get("resp_3", "k1")).items == items
    finally:
        again.close()
