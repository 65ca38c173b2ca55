"""A graceful stop (SIGTERM) mid-load loses no accepted request from the ledger."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .helpers import free_port

APP = Path(__file__).with_name("sigterm_app.py")


async def wait_until_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient() as client:
        while True:
            assert proc.poll() is None, "the app exited early"
            try:
                await client.get(url + "/metrics")
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the app did not start"
                await asyncio.sleep(0.05)


async def load(url: str, answered: list[str], stop_after: int, proc: subprocess.Popen[bytes]) -> None:
    counter = iter(range(10**9))
    sent_term = asyncio.Event()

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in range(2000):  # bounded: stops by itself
            rid = f"r{next(counter)}"
            try:
                response = await client.post(url + "/work", params={"id": rid})
            except httpx.TransportError:
                if sent_term.is_set():
                    return
                continue
            if response.status_code == 200:
                answered.append(response.json()["id"])
            if len(answered) >= stop_after and not sent_term.is_set():
                sent_term.set()
                proc.send_signal(signal.SIGTERM)

    async with httpx.AsyncClient(timeout=10) as client:
        await asyncio.gather(*(worker(client) for _ in range(16)))


async def test_every_answered_request_has_a_row_after_sigterm(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, str(APP), str(port), str(tmp_path)], env=env)
    try:
        await wait_until_up(url, proc)
        answered: list[str] = []
        await load(url, answered, stop_after=300, proc=proc)
        # uvicorn stops gracefully, then re-raises the signal it caught
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    db = sqlite3.connect(tmp_path / "ledger.db")
    rows = {r[0] for r in db.execute("SELECT request_id FROM requests")}
    db.close()
    assert len(answered) >= 300
    assert set(answered) <= rows
