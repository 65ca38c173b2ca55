"""The cache seen through the HTTP API: hits, tenant isolation by key, purge."""

from __future__ import annotations

from pathlib import Path

import httpx

from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.server.app import create_app

MSG = [{"role": "user", "content": "what is a cache?"}]


def _client(tmp_path: Path) -> httpx.AsyncClient:
    config = parse_config(
        {
            "server": {"data_dir": str(tmp_path), "api_keys": ["key-a", "key-b"]},
            "models": [
                {
                    "name": "m",
                    "deployments": [{"provider": "fake", "model": "x", "options": {"script": "an answer"}}],
                }
            ],
            "cache": {"l2_path": str(tmp_path / "cache.db")},
        }
    )
    gateway = Gateway(config, observe=False)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gateway)), base_url="http://t")


async def test_cache_hits_are_isolated_per_api_key_and_purgeable(tmp_path: Path) -> None:
    body = {"model": "m", "messages": MSG, "temperature": 0, "thrifty": {"cache": {"namespace": "docs"}}}
    a = {"authorization": "Bearer key-a"}
    b = {"authorization": "Bearer key-b"}
    async with _client(tmp_path) as c:
        first = await c.post("/v1/chat/completions", json=body, headers=a)
        again = await c.post("/v1/chat/completions", json=body, headers=a)
        other_key = await c.post("/v1/chat/completions", json=body, headers=b)
        # the same tenant name under two keys is two partitions
        await c.post("/v1/chat/completions", json=body, headers={**a, "x-thrifty-tenant": "team"})
        spoof = await c.post("/v1/chat/completions", json=body, headers={**b, "x-thrifty-tenant": "team"})
        purged = await c.post("/v1/cache/purge", json={"namespace": "docs"}, headers=a)
        after = await c.post("/v1/chat/completions", json=body, headers=a)
        bad = await c.post("/v1/cache/purge", json={}, headers=a)
        anonymous = await c.post("/v1/cache/purge", json={"namespace": "docs"})
    assert first.headers["x-thrifty-cache"].startswith("miss")
    assert again.headers["x-thrifty-cache"] == "hit-exact"
    assert other_key.headers["x-thrifty-cache"].startswith("miss")
    assert spoof.headers["x-thrifty-cache"].startswith("miss")
    assert purged.status_code == 200 and purged.json()["removed"] >= 1
    assert after.headers["x-thrifty-cache"].startswith("miss")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "namespace"
    assert anonymous.status_code == 401
