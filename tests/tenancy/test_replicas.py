"""Three `thrifty serve` processes on one Redis and one PostgreSQL share every limit.

A key limited to 60 requests per minute admits at most 60 of 300 requests spread over the
three; a small budget spread over the three is overspent by at most one request's worth;
a key revoked through one replica is refused by the others once their key cache expires
(0.5 s here). The real `openai` client sees the 429 with Retry-After and a readable message.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
import pytest
from tests.processes import free_port as _port
from tests.processes import serve
from tests.processes import stop as _stop
from tests.processes import wait_ready as _wait

ADMIN = "sk-admin-replicas"


def call(
    url: str, path: str, body: dict[str, Any] | None = None, key: str = ADMIN, method: str | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url + path,
        data=data,
        method=method,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read()), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


@pytest.fixture
def replicas(tmp_path: Path, redis_url: str, postgres_url: str) -> Iterator[list[str]]:
    up_port = _port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "thrifty.fakeupstream", "--port", str(up_port), "--chunks", "100"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    procs = [upstream]
    try:
        _wait(f"http://127.0.0.1:{up_port}/health", upstream)
        urls = []
        for i in range(3):
            folder = tmp_path / f"r{i}"
            folder.mkdir()
            cfg = folder / "thrifty.yaml"
            cfg.write_text(f"""
server: {{api_keys: [{ADMIN}], data_dir: {folder}}}
tenancy: {{database_url: "{postgres_url}", redis_url: "{redis_url}", cache_ttl: 0.3}}
models:
  - name: fake
    deployments:
      - {{provider: openai, model: m, api_base: "http://127.0.0.1:{up_port}/v1", api_key: sk-up, price_model: gpt-4o}}
""")
            proc, url = serve(cfg)
            procs.append(proc)
            urls.append(url)
        yield urls
    finally:
        for proc in reversed(procs):
            _stop(proc)


def _chat(url: str, key: str, max_tokens: int = 16) -> int:
    body = {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": max_tokens}
    return call(url, "/v1/chat/completions", body, key=key)[0]


def _away_from_a_minute_boundary() -> None:
    """A sliding window lets a few more in just after a minute turns; start well inside one."""
    second = time.time() % 60
    if second > 45:
        time.sleep(61 - second)


def test_a_rate_limit_holds_across_three_replicas(replicas: list[str]) -> None:
    status, key, _ = call(replicas[0], "/admin/keys", {"name": "limited", "rpm": 60})
    assert status == 201, key
    _away_from_a_minute_boundary()
    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(lambda i: _chat(replicas[i % 3], key["secret"]), range(300)))
    assert statuses.count(200) == 60
    assert statuses.count(429) == 240

    client = openai.OpenAI(base_url=replicas[1] + "/v1", api_key=key["secret"], max_retries=0)
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}])
    assert int(err.value.response.headers["retry-after"]) >= 1
    assert "Rate limit reached for key 'limited': 60 requests per minute" in err.value.message


def test_a_budget_spread_over_three_replicas_is_overspent_by_at_most_one_request(replicas: list[str]) -> None:
    status, key, _ = call(replicas[0], "/admin/keys", {"name": "thrifty-spender", "budget": "0.005/day"})
    assert status == 201, key
    # gpt-4o prices; the upstream answers 100 tokens: each answer costs ~$0.001, and each
    # request reserves its worst case (its prompt plus max_tokens=100) before it is sent
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(lambda i: _chat(replicas[i % 3], key["secret"], 100), range(30)))
    assert 200 in statuses and 429 in statuses
    time.sleep(2.5)  # spend is written in the background, about once a second
    _, shown, _ = call(replicas[2], f"/admin/keys/{key['id']}")
    one_request = 10e-6 * 100 + 2.5e-6 * 64  # worst case of one request at gpt-4o prices
    assert statuses.count(200) >= 3
    assert shown["spend"]["period_usd"] <= 0.005 + one_request
    _, body, _ = call(
        replicas[1],
        "/v1/chat/completions",
        {"model": "fake", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100},
        key=key["secret"],
    )
    assert body["error"]["code"] == "budget_exceeded"
    assert "$0.005 per day" in body["error"]["message"] and "resets at" in body["error"]["message"]


def test_a_key_revoked_on_one_replica_is_refused_on_the_others(replicas: list[str]) -> None:
    _, key, _ = call(replicas[0], "/admin/keys", {"name": "short-lived"})
    assert all(_chat(url, key["secret"]) == 200 for url in replicas)
    status, revoked, _ = call(replicas[0], f"/admin/keys/{key['id']}", method="DELETE")
    assert status == 200 and revoked["revoked_at"] is not None
    time.sleep(1.0)  # a replica sees a change within 2 x cache_ttl = 0.6 s
    for url in replicas:
        status, body, _ = call(url, "/v1/models", key=key["secret"])
        assert status == 401 and body["error"]["code"] == "key_revoked"
