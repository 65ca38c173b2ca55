"""Warming the memory level at start and after a purge: from the ledger's frequent keys, then the disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from thrifty.cache.settings import StoreSettings
from thrifty.cache.store import CacheStore
from thrifty.cache.warm import frequent_keys
from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.server.app import create_app


def config(tmp_path: Path, l1_bytes: int) -> Any:
    return parse_config(
        {
            "server": {"data_dir": str(tmp_path)},
            "cache": {"ttl": 600, "l1_bytes": l1_bytes},
            "models": [
                {
                    "name": "m",
                    "deployments": [
                        {"provider": "fake", "model": "x", "options": {"script": "an answer " * 20}}
                    ],
                }
            ],
        },
        source="thrifty.yaml",
    )


def body(question: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": question}], "temperature": 0}


async def serve(tmp_path: Path, l1_bytes: int, questions: list[str]) -> tuple[list[str], Gateway]:
    gateway = Gateway(config(tmp_path, l1_bytes))
    await gateway.start()
    transport = httpx.ASGITransport(app=create_app(gateway))
    seen = []
    async with httpx.AsyncClient(transport=transport, base_url="http://thrifty") as client:
        for question in questions:
            answer = await client.post("/v1/chat/completions", json=body(question))
            assert answer.status_code == 200
            seen.append(answer.headers["x-thrifty-cache"])
    return seen, gateway


def store_of(gateway: Gateway) -> CacheStore:
    store = gateway.stack.cache_store
    assert store is not None
    return store


async def test_a_restart_warms_memory_with_the_most_frequent_answers_first(tmp_path: Path) -> None:
    # Day one: "often" asked 5 times, "sometimes" 3, then ten one-off questions written after them.
    questions = ["often"] * 5 + ["sometimes"] * 3 + [f"once {i}" for i in range(10)]
    _, first = await serve(tmp_path, 64 * 1024 * 1024, questions)
    memory = store_of(first).tiers.memory
    entry = memory.bytes // len(memory)
    await first.aclose()  # the ledger is drained, L2 keeps every answer
    keys = frequent_keys(str(tmp_path / "ledger.db"), 0)
    assert len(keys) == 12

    # Day two: memory for about four answers. The two frequent ones must be among them,
    # although ten answers were written to disk after them.
    second = Gateway(config(tmp_path, int(entry * 4.5)))
    await second.start()
    store = store_of(second)
    report = await store.warmed_up()
    assert report is not None and report.from_ledger == 4 and report.from_disk == 0
    assert keys[0] in store.tiers.memory and keys[1] in store.tiers.memory
    assert store.tiers.memory.bytes <= store.tiers.memory.max_bytes
    transport = httpx.ASGITransport(app=create_app(second))
    async with httpx.AsyncClient(transport=transport, base_url="http://thrifty") as client:
        for question in ("often", "sometimes", "never asked"):
            await client.post("/v1/chat/completions", json=body(question))
    stats = store.stats()
    assert stats["hits_l1"] == 2 and stats["hits_l2"] == 0 and stats["misses"] == 1
    assert stats["first_minute_lookups"] == 3 and stats["first_minute_l1_hit_rate"] == round(2 / 3, 4)
    assert stats["warm_from_ledger"] == 4
    await second.aclose()


async def test_without_a_ledger_the_newest_disk_answers_warm_memory(tmp_path: Path) -> None:
    path = str(tmp_path / "cache.sqlite3")
    writer = CacheStore(StoreSettings(l2_path=path, warm=False))
    await writer.start()
    for i in range(5):
        writer.tiers.put(f"k{i}", "", b"x" * 100, (600, 600, 600))
    await writer.stop()
    store = CacheStore(StoreSettings(l2_path=path, l1_bytes=3 * (100 + 2 + 160), ledger_path=None))
    await store.start()
    report = await store.warmed_up()
    assert report is not None and (report.from_ledger, report.from_disk) == (0, 3)
    assert [k in store.tiers.memory for k in ("k0", "k1", "k2", "k3", "k4")] == [
        False,
        False,
        True,
        True,
        True,
    ]
    await store.stop()


async def test_a_purge_warms_memory_again_from_what_is_left(tmp_path: Path) -> None:
    path = str(tmp_path / "cache.sqlite3")
    store = CacheStore(StoreSettings(l2_path=path))
    await store.start()
    await store.warmed_up()
    store.tiers.put("keep", "a", b"1" * 50, (600, 600, 600))
    store.tiers.put("drop", "b", b"2" * 50, (600, 600, 600))
    await store.tiers.flush()
    store.tiers.memory.purge("a")  # as if memory had lost it (restart, eviction)
    assert "keep" not in store.tiers.memory
    await store.purge("b")
    report = await store.warmed_up()
    assert report is not None and report.from_disk == 1
    assert "keep" in store.tiers.memory and "drop" not in store.tiers.memory
    assert store.stats()["first_minute_lookups"] == 0
    await store.stop()
