"""A ledger that cannot be opened or written: the gateway serves, says why, and catches up."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from thrifty.config import Config, parse_config
from thrifty.gateway import Gateway
from thrifty.observe import Observer
from thrifty.server.app import create_app
from thrifty.storage import Backoff

from .helpers import event, free_port, make_config


def count(path: Path | str, table: str = "requests") -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def eventually(check: Any, what: str, seconds: float = 30.0) -> Any:
    """Poll ``check`` until it returns something true (a bound, not a timing assert)."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)


def gateway_config(data_dir: Path) -> Config:
    return parse_config(
        {
            "server": {"data_dir": str(data_dir)},
            "models": [
                {
                    "name": "s",
                    "deployments": [{"provider": "fake", "model": "x", "options": {"script": "hi"}}],
                }
            ],
        }
    )


@contextmanager
def running(gateway: Gateway) -> Iterator[str]:
    """The whole app (lifespan included) on a real loopback server in a thread."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(gateway), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    eventually(lambda: server.started, "the server started")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def ready(url: str) -> tuple[int, dict[str, Any]]:
    r = httpx.get(url + "/ready")
    return r.status_code, r.json()


def ask(url: str) -> str:
    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
    reply = client.chat.completions.create(model="s", messages=[{"role": "user", "content": "hello"}])
    assert reply.choices[0].message.content == "hi"
    return reply.id


def test_a_ledger_in_a_read_only_directory_serves_degraded_then_recovers_without_restart(disk: Any) -> None:
    disk.read_only()
    gateway = Gateway(gateway_config(disk.path))
    ledger = disk.path / "ledger.db"
    with running(gateway) as url:
        eventually(lambda: ready(url)[0] == 200, "/ready answered 200")
        ids = [ask(url), ask(url)]
        status, body = ready(url)
        assert status == 200 and body["status"] == "degraded" and body["models"] == ["s"]
        assert any(str(ledger) in reason and "cannot be opened" in reason for reason in body["reasons"])
        disk.writable()
        eventually(lambda: ready(url)[1]["status"] == "ready", "/ready turned ready")
        eventually(lambda: ledger.exists() and count(ledger) == 2, "the held rows were written")
        ids.append(ask(url))
    db = sqlite3.connect(ledger)
    assert sorted(r[0] for r in db.execute("SELECT request_id FROM requests")) == sorted(ids)
    db.close()


async def test_a_read_only_ledger_file_is_never_renamed(disk: Any, caplog: pytest.LogCaptureFixture) -> None:
    config = make_config(disk.path)
    first = Observer(config)
    await first.start()
    first.record(event(1))
    await first.aclose()
    path = Path(first.ledger_settings.path)
    before = path.read_bytes()
    disk.read_only()
    obs = Observer(config)
    await obs.start()
    obs.record(event(2))
    obs.absorb()
    assert obs.ledger is None and obs.degraded() and str(path) in obs.degraded()[0]
    await obs.aclose()
    assert sorted(p.name for p in disk.path.iterdir() if "corrupt" in p.name) == []
    assert path.read_bytes() == before
    disk.writable()
    assert count(path) == 1
    assert "could not be written" in caplog.text  # the row that could not be kept is said, not hidden


def damage(path: Path) -> None:
    """Overwrite every page after the first with noise: a real, quick_check-failing file."""
    data = bytearray(path.read_bytes())
    for i in range(4096, len(data)):
        data[i] = (i * 7919) % 251
    path.write_bytes(bytes(data))


async def test_a_ledger_that_fails_its_integrity_check_is_set_aside(config: Config) -> None:
    first = Observer(config)
    await first.start()
    for i in range(300):
        first.record(event(i))
    await first.aclose()
    path = Path(first.ledger_settings.path)
    damage(path)
    obs = Observer(config)
    await obs.start()
    obs.record(event(1000))
    await obs.aclose()
    [kept] = path.parent.glob("ledger.db.corrupt-*")
    assert count(path) == 1 and obs.degraded() == []
    with pytest.raises(sqlite3.DatabaseError):
        count(kept)


async def test_a_ledger_that_cannot_be_created_on_a_full_disk_holds_rows_until_space_returns(
    disk: Any,
) -> None:
    disk.fill()
    obs = Observer(make_config(disk.path))
    obs.outage.backoff = Backoff(first=0.01, most=0.05)
    await obs.start()
    assert obs.ledger is None and "disk full" in obs.degraded()[0]
    for i in range(20):
        obs.record(event(i))
    obs.absorb()
    assert "20 rows held in memory" in obs.degraded()[0]
    disk.free()
    await asyncio.to_thread(
        eventually, lambda: obs.ledger is not None and not obs._unwritten, "the ledger opened"
    )
    await obs.aclose()
    assert count(obs.ledger_settings.path) == 20 and obs.degraded() == []


async def test_a_disk_that_fills_while_running_keeps_rows_and_writes_them_later(disk: Any) -> None:
    obs = Observer(make_config(disk.path, ledger={"flush_ms": 600_000, "batch_rows": 1_000_000}))
    await obs.start()
    obs.record(event(0))
    assert obs.flush(force=True) == 1
    disk.fill()
    for i in range(1, 201):
        obs.record(event(i, annotations={"route": "x" * 100}))
    assert obs.flush(force=True) == 0
    assert "disk full" in obs.degraded()[0] and "200 rows held" in obs.degraded()[0]
    assert obs.flush() == 0  # not due yet: the backoff spares the disk
    disk.free()
    assert obs.flush(force=True) == 200
    assert obs.degraded() == []
    await obs.aclose()
    assert count(obs.ledger_settings.path) == 201


async def test_rows_beyond_the_memory_hold_are_dropped_counted_and_logged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import thrifty.observe as observe
    from thrifty.observe.stats import prometheus

    monkeypatch.setattr(observe, "_MAX_QUEUE", 10)
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the ledger's folder should be")
    obs = Observer(make_config(tmp_path, ledger={"path": str(blocker / "ledger.db")}))
    await obs.start()
    for i in range(25):
        obs.record(event(i))
    obs.absorb()
    assert obs.rows_dropped == 15 and "15 dropped" in obs.degraded()[0]
    assert "thrifty_ledger_rows_dropped 15" in prometheus(obs)
    assert "dropping the oldest" in caplog.text
    await obs.aclose()
