"""A batch store that cannot be opened: chat is still served, batch routes say why (503)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from thrifty.config import parse_config
from thrifty.errors import StorageUnavailable
from thrifty.gateway import Gateway
from thrifty.server.app import create_app
from thrifty.storage import Backoff
from thrifty.tasks.batch_store import BatchStore
from thrifty.testing import FakeBackend

MSG = [{"role": "user", "content": "hello"}]


def client_for(data_dir: Path) -> tuple[Gateway, httpx.AsyncClient]:
    config = parse_config({"server": {"data_dir": str(data_dir)}})
    gateway = Gateway(config, backends={"m": FakeBackend("served")})
    transport = httpx.ASGITransport(app=create_app(gateway))
    return gateway, httpx.AsyncClient(transport=transport, base_url="http://thrifty")


async def test_an_unopenable_batch_store_answers_503_and_chat_is_still_served(tmp_path: Path) -> None:
    (tmp_path / "batches.db").mkdir()  # something that is not a database file sits where the store goes
    gateway, client = client_for(tmp_path)
    async with client:
        chat = await client.post("/v1/chat/completions", json={"model": "m", "messages": MSG})
        assert chat.status_code == 200 and chat.json()["choices"][0]["message"]["content"] == "served"
        for method, path in (
            ("GET", "/v1/batches"),
            ("GET", "/v1/batches/batch_x"),
            ("GET", "/v1/files/file-x"),
        ):
            r = await client.request(method, path)
            assert r.status_code == 503, (path, r.text)
            error = r.json()["error"]
            assert (
                error["code"] == "storage_unavailable" and "batch store cannot be opened" in error["message"]
            )
            assert str(tmp_path) not in error["message"]  # the cause, not the server's paths
        ready = (await client.get("/ready")).json()
        assert ready["status"] == "degraded"
        assert any("batch store" in reason and "batches.db" in reason for reason in ready["reasons"])
        (tmp_path / "batches.db").rmdir()
        for _ in range(3000):  # the store retries in the background; no restart
            if (await client.get("/v1/batches")).status_code == 200:
                break
            await asyncio.sleep(0.01)
        listing = await client.get("/v1/batches")
        assert listing.status_code == 200 and listing.json()["data"] == []
        assert (await client.get("/ready")).json()["status"] == "ready"
    await gateway.aclose()


def test_a_read_only_batch_store_is_never_renamed(disk: Any) -> None:
    path = disk.path / "batches.db"
    store = BatchStore(str(path))
    store.add_file({"id": "file-1", "created_at": 1, "data": "kept"})
    store.close()
    disk.read_only()
    store = BatchStore(str(path), backoff=Backoff(first=60.0))
    with pytest.raises(StorageUnavailable) as raised:
        store.file("file-1")
    assert raised.value.status == 503 and store.degraded()
    store.close()
    disk.writable()
    assert not any("corrupt" in p.name for p in disk.path.iterdir())
    store = BatchStore(str(path))
    assert store.file("file-1") == {"id": "file-1", "created_at": 1, "data": "kept"}
    store.close()


def test_a_batch_store_that_is_not_a_database_is_set_aside(tmp_path: Path) -> None:
    path = tmp_path / "batches.db"
    path.write_bytes(b"this is not a database" * 100)
    store = BatchStore(str(path))
    assert store.set_aside is not None and Path(store.set_aside).read_bytes().startswith(b"this is not")
    assert store.batches() == [] and store.degraded() == []
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM batches").fetchone() == (0,)
    db.close()
