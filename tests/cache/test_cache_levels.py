"""The levels on their own: the memory budget, a damaged disk file, Redis shared and Redis gone."""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from thrifty.cache.disk import DiskLevel
from thrifty.cache.memory import MemoryLevel
from thrifty.cache.settings import StoreSettings
from thrifty.cache.store import CacheStore
from thrifty.storage import Backoff
from thrifty.testing import FakeBackend, chat


def ask(text: str = "hello") -> Any:
    return chat(text, model="fast", temperature=0)


def test_memory_keeps_recent_entries_within_its_byte_budget(clock: Any) -> None:
    memory = MemoryLevel(max_bytes=3 * (1000 + 1 + 160), clock=clock)
    for key in "abc":
        memory.put(key, b"x" * 1000, ttl=60, namespace="n")
    assert memory.get("a") is not None  # a is now the most recent
    memory.put("d", b"x" * 1000, ttl=60, namespace="n")
    assert memory.get("b") is None
    assert {k for k in "acd" if memory.get(k)} == set("acd")
    assert memory.bytes <= memory.max_bytes
    memory.put("huge", b"x" * 10_000, ttl=60, namespace="n")  # larger than the budget: not kept
    assert memory.get("huge") is None and memory.get("d") is not None


async def test_a_damaged_disk_file_is_set_aside_and_rebuilt(tmp_path: Path, clock: Any) -> None:
    path = tmp_path / "cache.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    disk = DiskLevel(str(path), clock)
    await disk.open()
    await disk.put("k", "n", b"value", clock() + 60)
    assert await disk.get("k") == (b"value", clock() + 60)
    assert len(disk.set_aside) == 1
    assert Path(disk.set_aside[0]).read_bytes().startswith(b"this is not a database")
    await disk.aclose()


def damage(path: Path) -> None:
    """Overwrite every page after the first with noise: a file that fails quick_check."""
    data = bytearray(path.read_bytes())
    for i in range(4096, len(data)):
        data[i] = (i * 7919) % 251
    path.write_bytes(bytes(data))


async def test_a_file_that_fails_its_integrity_check_is_set_aside_at_open(tmp_path: Path, clock: Any) -> None:
    path = tmp_path / "cache.sqlite3"
    disk = DiskLevel(str(path), clock)
    await disk.open()
    for i in range(200):
        await disk.put(f"k{i}", "n", b"value" * 20, clock() + 60)
    await disk.aclose()
    damage(path)
    disk = DiskLevel(str(path), clock)
    await disk.open()
    assert len(disk.set_aside) == 1 and disk.degraded() == []
    assert await disk.get("k150") is None
    await disk.put("k2", "n", b"fresh", clock() + 60)
    assert await disk.get("k2") is not None
    await disk.aclose()


async def test_corruption_found_while_running_rebuilds_the_file(tmp_path: Path, clock: Any) -> None:
    path = tmp_path / "cache.sqlite3"
    disk = DiskLevel(str(path), clock)
    await disk.open()
    for i in range(200):
        await disk.put(f"k{i}", "n", b"value" * 20, clock() + 60)
    await disk._run(disk._close)
    damage(path)
    disk._db = sqlite3.connect(path, check_same_thread=False)  # as if it broke after a clean open
    assert await disk.get("k150") is None
    assert disk.errors == 1 and len(disk.set_aside) == 1
    await disk.put("k2", "n", b"fresh", clock() + 60)
    assert await disk.get("k2") is not None
    await disk.aclose()


async def test_a_busy_or_failing_call_is_skipped_and_the_file_kept(tmp_path: Path, clock: Any) -> None:
    path = tmp_path / "cache.sqlite3"
    disk = DiskLevel(str(path), clock)
    await disk.open()
    await disk.put("k", "n", b"value", clock() + 60)

    def broken(*_: Any) -> Any:
        raise sqlite3.DatabaseError("database disk image is malformed")  # no SQLite code: not damage

    disk._get = broken  # type: ignore[method-assign,assignment]
    assert await disk.get("k") is None
    assert disk.errors == 1 and disk.set_aside == []
    del disk._get
    assert await disk.get("k") is not None
    await disk.aclose()


async def test_an_unopenable_disk_level_degrades_to_memory_and_recovers(disk: Any, clock: Any) -> None:
    disk.read_only()
    store = CacheStore(StoreSettings(l2_path=str(disk.path / "cache.sqlite3")), clock=clock)
    level = store.tiers.disk
    assert level is not None
    level.outage.backoff = Backoff(first=0.01, most=0.05)
    await store.start()
    [reason] = store.degraded()
    assert "cache.sqlite3 cannot be opened" in reason and "runs from memory" in reason
    store.tiers.put("k", "n", b"value", (60, 60, 60))
    await store.tiers.flush()
    assert await store.tiers.get("k", "n", (60, 60, 60)) == b"value"  # from memory
    disk.writable()
    for _ in range(1000):
        if not store.degraded():
            break
        await asyncio.sleep(0.01)
    assert store.degraded() == []
    await level.put("k2", "n", b"on disk", clock() + 60)
    assert await level.get("k2") == (b"on disk", clock() + 60)
    await store.stop()
    assert not any("corrupt" in p.name for p in disk.path.iterdir())


async def test_a_read_only_cache_file_is_never_renamed(disk: Any, clock: Any) -> None:
    path = disk.path / "cache.sqlite3"
    level = DiskLevel(str(path), clock)
    await level.open()
    await level.put("k", "n", b"kept", clock() + 60)
    await level.aclose()
    disk.read_only()
    level = DiskLevel(str(path), clock)
    await level.open()
    assert level.degraded() and level.set_aside == []
    await level.aclose()
    disk.writable()
    assert not any("corrupt" in p.name for p in disk.path.iterdir())
    level = DiskLevel(str(path), clock)
    await level.open()
    assert await level.get("k") == (b"kept", clock() + 60)
    await level.aclose()


async def test_unwritable_disk_path_runs_without_l2(tmp_path: Path, clock: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = CacheStore(StoreSettings(l2_path=str(blocker / "sub" / "cache.sqlite3")), clock=clock)
    await store.start()
    assert "cannot be opened" in store.degraded()[0]
    await store.stop()


@pytest.mark.redis
async def test_redis_shares_answers_between_replicas(redis_url: str, tmp_path: Path, make_layer: Any) -> None:
    replicas = [
        CacheStore(
            StoreSettings(l2_path=str(tmp_path / f"r{i}.sqlite3"), redis_url=redis_url, redis_timeout=1.0)
        )
        for i in range(2)
    ]
    for store in replicas:
        await store.start()
    await make_layer(FakeBackend("from replica 0"), store=replicas[0]).complete(ask())
    await replicas[0].tiers.flush()
    backend = FakeBackend("not called")
    request = ask()
    assert (await make_layer(backend, store=replicas[1]).complete(request)).text == "from replica 0"
    assert replicas[1].tiers.counters.hits["l3"] == 1 and backend.requests == []
    key = next(iter(replicas[1].tiers.memory._entries))
    await replicas[1].tiers.flush()
    assert await replicas[1].tiers.disk.get(key) is not None  # type: ignore[union-attr]
    assert await replicas[0].purge("default") == 1
    for _ in range(200):  # replica 1 hears of the purge over pub/sub and drops its local copies
        if not replicas[1].tiers.memory:
            break
        await asyncio.sleep(0.01)
    assert len(replicas[1].tiers.memory) == 0
    assert await replicas[1].tiers.disk.get(key) is None  # type: ignore[union-attr]
    fresh = CacheStore(StoreSettings(l2_path=None, redis_url=redis_url, redis_timeout=1.0))
    await fresh.start()
    backend = FakeBackend("recomputed")
    assert (await make_layer(backend, store=fresh).complete(ask())).text == "recomputed"
    for store in [*replicas, fresh]:
        await store.stop()


async def test_redis_down_degrades_to_local_levels_with_one_log_line(
    tmp_path: Path, make_layer: Any, caplog: Any
) -> None:
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = CacheStore(
        StoreSettings(l2_path=str(tmp_path / "c.sqlite3"), redis_url=f"redis://127.0.0.1:{port}/0")
    )
    await store.start()
    backend = FakeBackend("served anyway")
    layer = make_layer(backend, store=store)
    with caplog.at_level(logging.WARNING, logger="thrifty.cache"):
        for _ in range(5):
            assert (await layer.complete(ask())).text == "served anyway"
            await store.tiers.flush()
    assert len(backend.requests) == 1
    assert store.stats()["redis_failures"] >= 1 and store.stats()["redis_up"] == 0.0
    assert len([r for r in caplog.records if "Redis" in r.getMessage()]) == 1
    await store.stop()


async def test_slow_redis_is_cut_off_by_its_deadline(tmp_path: Path, make_layer: Any) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accept, then never answer

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = CacheStore(
        StoreSettings(l2_path=None, redis_url=f"redis://127.0.0.1:{port}/0", redis_timeout=0.05)
    )
    await store.start()
    backend = FakeBackend("served")
    assert (await make_layer(backend, store=store).complete(ask())).text == "served"
    assert store.tiers.redis is not None and store.tiers.redis.down
    await store.stop()
    for writer in accepted:
        writer.close()
    server.close()
    await server.wait_closed()


async def test_redis_that_does_not_answer_is_reported_as_degraded(tmp_path: Path, clock: Any) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = CacheStore(
        StoreSettings(l2_path=None, redis_url=f"redis://127.0.0.1:{port}/0", redis_timeout=0.5), clock=clock
    )
    await store.start()
    assert store.degraded() == []
    assert await store.tiers.get("k", "n", (60, 60, 60)) is None
    [reason] = store.degraded()
    assert "Redis does not answer" in reason and str(port) not in reason
    await store.stop()
