"""Through the real server app: a chat answered by the gateway shows up in metrics,
the dashboard stats and the ledger, and can be rated by its response id."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx

from thrifty.gateway import Gateway
from thrifty.server.app import create_app
from thrifty.testing import FakeBackend

from .helpers import make_config


async def test_a_served_chat_is_counted_ledgered_and_rateable(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    gateway = Gateway(config, backends={"fast": FakeBackend("four words of answer")})
    app = create_app(gateway)
    await gateway.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            chat = await client.post(
                "/v1/chat/completions",
                json={
                    "model": "fast",
                    "messages": [{"role": "user", "content": "hello there"}],
                },
            )
            assert chat.status_code == 200, chat.text
            response_id = chat.json()["id"]
            metrics = (await client.get("/metrics")).text
            stats = (await client.get("/dashboard/api/stats")).json()
            rated = await client.post("/v1/feedback", json={"response_id": response_id, "rating": 5})
            page = await client.get("/dashboard")
    finally:
        await gateway.aclose()
    assert 'thrifty_requests_total{model="fast"' in metrics
    assert stats["totals"]["requests"] == 1 and stats["recent"][0]["request_id"] == response_id
    assert rated.status_code == 200, rated.text
    assert page.status_code == 200 and "dashboard.js" in page.text
    assert gateway.observer is not None
    db = sqlite3.connect(gateway.observer.ledger_settings.path)
    [(rid, status, completion)] = db.execute(
        "SELECT request_id, status, completion_tokens FROM requests"
    ).fetchall()
    [(rating,)] = db.execute("SELECT rating FROM feedback WHERE response_id = ?", (response_id,)).fetchall()
    db.close()
    assert (rid, status, rating) == (response_id, 200, 5) and completion > 0
