"""With API keys configured, metrics, stats, alerts and feedback need a key; the page does not."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from thrifty.observe import Observer

from .helpers import event, make_config


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/metrics"), ("GET", "/dashboard/api/stats"), ("GET", "/admin/alerts"),
     ("POST", "/v1/feedback"), ("GET", "/v1/feedback/chatcmpl-1")],
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
