"""With API keys configured, metrics, stats, alerts and feedback need a key (admin data an admin key); the page does not."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from thrifty.errors import InvalidRequest
from thrifty.observe import Observer
from thrifty.observe.feedback import parse_feedback
from thrifty.observe.ledger import Ledger

from .helpers import event, make_config


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/metrics"),
        ("GET", "/dashboard/api/stats"),
        ("GET", "/admin/alerts"),
        ("POST", "/v1/feedback"),
        ("GET", "/v1/feedback/chatcmpl-1"),
    ],
)
async def test_data_endpoints_need_the_key(tmp_path: Path, method: str, path: str) -> None:
    obs = Observer(make_config(tmp_path, server={"data_dir": str(tmp_path), "api_keys": ["sk-right"]}))
    obs.record(event(1))
    app = Starlette(routes=obs.routes())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        missing = await c.request(method, path)
        wrong = await c.request(method, path, headers={"authorization": "Bearer sk-wrong"})
        right = await c.request(method, path, headers={"authorization": "Bearer sk-right"})
        page = await c.get("/dashboard")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "missing_api_key"
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert right.status_code != 401
    assert page.status_code == 200


@pytest.mark.parametrize("path", ["/metrics", "/dashboard/api/stats", "/admin/alerts"])
async def test_admin_data_is_refused_to_a_client_key(tmp_path: Path, path: str) -> None:
    keys = ["sk-admin", {"key": "sk-client", "role": "client"}]
    obs = Observer(make_config(tmp_path, server={"data_dir": str(tmp_path), "api_keys": keys}))
    app = Starlette(routes=obs.routes())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        client = await c.get(path, headers={"authorization": "Bearer sk-client"})
        admin = await c.get(path, headers={"x-api-key": "sk-admin"})
    assert client.status_code == 403 and client.json()["error"]["type"] == "permission_error"
    assert admin.status_code == 200


async def test_public_metrics_are_served_without_a_key(tmp_path: Path) -> None:
    server = {"data_dir": str(tmp_path), "api_keys": ["sk-admin"], "public_metrics": True}
    obs = Observer(make_config(tmp_path, server=server))
    app = Starlette(routes=obs.routes())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        metrics = await c.get("/metrics")
        stats = await c.get("/dashboard/api/stats")
    assert metrics.status_code == 200 and stats.status_code == 401


async def test_a_session_cookie_opens_the_dashboard_data(tmp_path: Path) -> None:
    obs = Observer(make_config(tmp_path, server={"data_dir": str(tmp_path), "api_keys": ["sk-admin"]}))
    app = Starlette(routes=obs.routes())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        before = await c.get("/dashboard/api/stats")
        login = await c.post("/dashboard/login", data={"key": "sk-admin"})
        after = await c.get("/dashboard/api/stats")
    assert before.status_code == 401 and login.status_code == 303
    assert after.status_code == 200 and after.headers["referrer-policy"] == "no-referrer"


def test_a_ledger_from_before_owners_gains_the_owner_column(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE feedback (id INTEGER PRIMARY KEY, response_id TEXT NOT NULL, ts REAL NOT NULL,"
        " rating INTEGER NOT NULL, comment TEXT, corrected_answer TEXT, model TEXT, tier TEXT, route TEXT)"
    )
    old.execute("INSERT INTO feedback (response_id, ts, rating) VALUES ('r1', 1, 4)")
    old.commit()
    old.close()
    ledger = Ledger(str(path))
    try:
        ledger.add_feedback({"response_id": "r1", "ts": 2, "rating": 1, "owner": "k1"})
        assert [r["rating"] for r in ledger.feedback("r1")] == [4, 1]
        assert [r["rating"] for r in ledger.feedback("r1", owner="k1")] == [1]
    finally:
        ledger.close()


@pytest.mark.parametrize("field", ["response_id", "comment", "corrected_answer"])
def test_feedback_text_with_a_lone_surrogate_is_refused_naming_the_field(field: str) -> None:
    body = {"response_id": "chatcmpl-1", "rating": 4, field: "half \ud83d a smile"}
    with pytest.raises(InvalidRequest) as refused:
        parse_feedback(body)
    assert refused.value.param == field and refused.value.status == 400
