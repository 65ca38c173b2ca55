"""The front door on a real loopback server: who may call what, and how much they may send.

One admin key and two client keys; the real `openai` client where OpenAI has
an API for the route, raw httpx for the rest.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.server.access import Access, key_id
from thrifty.server.app import create_app

ADMIN, ALICE, BOB = "sk-admin", "sk-alice", "sk-bob"
MSG = [{"role": "user", "content": "what is a front door?"}]
JSONL = (
    json.dumps(
        {
            "custom_id": "q1",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "m", "messages": MSG},
        }
    ).encode()
    + b"\n"
)


class Live:
    """``create_app`` under uvicorn on 127.0.0.1 (lifespan on), in this event loop."""

    def __init__(self, tmp_path: Path, **server: Any) -> None:
        keys: list[Any] = [ADMIN, {"key": ALICE, "role": "client"}, {"key": BOB, "role": "client"}]
        config = parse_config(
            {
                "server": {"data_dir": str(tmp_path), "api_keys": keys, **server},
                "models": [
                    {
                        "name": "m",
                        "deployments": [
                            {"provider": "fake", "model": "x", "options": {"script": "an answer"}}
                        ],
                    }
                ],
                "cache": {"l2_path": str(tmp_path / "cache.db")},
            }
        )
        self.gateway = Gateway(config)
        app = create_app(self.gateway)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.task: asyncio.Task[None] | None = None
        self.url = ""

    async def __aenter__(self) -> Live:
        self.task = asyncio.create_task(self.server.serve())
        for _ in range(500):
            if self.server.started:
                break
            await asyncio.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.http = httpx.AsyncClient(base_url=self.url, timeout=30)
        return self

    def openai(self, key: str) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0)

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        self.server.should_exit = True
        assert self.task is not None
        await self.task


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Live]:
    async with Live(tmp_path) as running:
        yield running


async def upload_and_submit(client: openai.AsyncOpenAI) -> tuple[Any, Any]:
    upload = await client.files.create(file=("in.jsonl", JSONL), purpose="batch")
    batch = await client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    return upload, batch


async def finished(client: openai.AsyncOpenAI, batch_id: str) -> Any:
    for _ in range(500):
        batch = await client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "cancelled"):
            return batch
        await asyncio.sleep(0.02)
    raise AssertionError(f"batch {batch_id} did not finish")


# -- who may call --------------------------------------------------------------------


async def test_files_and_batches_require_a_key(live: Live) -> None:
    async with live.openai(ALICE) as alice:
        upload, batch = await upload_and_submit(alice)
    anonymous = [
        await live.http.get("/v1/batches"),
        await live.http.get(f"/v1/batches/{batch.id}"),
        await live.http.post(f"/v1/batches/{batch.id}/cancel"),
        await live.http.post(
            "/v1/batches", json={"input_file_id": upload.id, "endpoint": "/v1/chat/completions"}
        ),
        await live.http.get(f"/v1/files/{upload.id}"),
        await live.http.get(f"/v1/files/{upload.id}/content"),
        await live.http.post("/v1/files", files={"file": ("in.jsonl", JSONL)}, data={"purpose": "batch"}),
    ]
    assert [r.status_code for r in anonymous] == [401] * 7
    assert all(r.json()["error"]["type"] == "authentication_error" for r in anonymous)
    wrong = await live.http.get("/v1/batches", headers=bearer("sk-guess"))
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"


async def test_every_route_needs_a_key_but_health_ready_and_the_dashboard_page(live: Live) -> None:
    closed = [
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/embeddings"),
        ("POST", "/v1/cache/purge"),
        ("GET", "/admin/status"),
        ("GET", "/admin/alerts"),
        ("GET", "/metrics"),
        ("GET", "/dashboard/api/stats"),
        ("POST", "/v1/feedback"),
        ("GET", "/v1/feedback/chatcmpl-1"),
    ]
    for method, path in closed:
        r = await live.http.request(method, path)
        assert r.status_code == 401, path
        assert r.json()["error"]["code"] == "missing_api_key", path
    for path in ("/health", "/dashboard", "/dashboard/static/dashboard.js"):
        assert (await live.http.get(path)).status_code == 200, path
    assert (await live.http.get("/ready")).status_code in (200, 503)


async def test_a_key_in_x_api_key_is_accepted(live: Live) -> None:
    r = await live.http.get("/v1/models", headers={"x-api-key": BOB})
    assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == ["m"]


async def test_client_key_reaches_the_model_routes(live: Live) -> None:
    async with live.openai(ALICE) as alice:
        reply = await alice.chat.completions.create(model="m", messages=MSG)  # type: ignore[arg-type]
        models = await alice.models.list()
    assert reply.choices[0].message.content == "an answer"
    assert [m.id for m in models.data] == ["m"]


async def test_client_key_cannot_reach_admin_routes(live: Live) -> None:
    for path in ("/admin/status", "/admin/alerts", "/dashboard/api/stats", "/metrics"):
        client = await live.http.get(path, headers=bearer(ALICE))
        admin = await live.http.get(path, headers=bearer(ADMIN))
        assert client.status_code == 403, path
        assert client.json()["error"]["code"] == "admin_key_required", path
        assert admin.status_code == 200, path


async def test_public_metrics_needs_no_key(tmp_path: Path) -> None:
    async with Live(tmp_path, public_metrics=True) as live:
        metrics = await live.http.get("/metrics")
        status = await live.http.get("/admin/status")
    assert metrics.status_code == 200 and "thrifty" in metrics.text
    assert status.status_code == 401


# -- owners: another key's objects do not exist for it ---------------------------------


async def test_client_key_cannot_read_another_keys_batch(live: Live) -> None:
    async with live.openai(ALICE) as alice, live.openai(BOB) as bob:
        _, batch = await upload_and_submit(alice)
        with pytest.raises(openai.NotFoundError) as read:
            await bob.batches.retrieve(batch.id)
        with pytest.raises(openai.NotFoundError):
            await bob.batches.cancel(batch.id)
        mine = await alice.batches.retrieve(batch.id)
    assert mine.id == batch.id
    assert read.value.status_code == 404 and batch.id in read.value.message


async def test_client_key_cannot_read_another_keys_file(live: Live) -> None:
    async with live.openai(ALICE) as alice, live.openai(BOB) as bob:
        upload = await alice.files.create(file=("in.jsonl", JSONL), purpose="batch")
        with pytest.raises(openai.NotFoundError):
            await bob.files.retrieve(upload.id)
        with pytest.raises(openai.NotFoundError):
            await bob.files.content(upload.id)
        with pytest.raises(openai.NotFoundError):  # nor run a batch over it
            await bob.batches.create(
                input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        assert (await alice.files.content(upload.id)).content == JSONL


async def test_listing_batches_shows_only_own_and_admin_sees_all(live: Live) -> None:
    async with live.openai(ALICE) as alice, live.openai(BOB) as bob, live.openai(ADMIN) as admin:
        _, a = await upload_and_submit(alice)
        _, b = await upload_and_submit(bob)
        alices = [x.id for x in (await alice.batches.list()).data]
        bobs = [x.id for x in (await bob.batches.list()).data]
        everyone = [x.id for x in (await admin.batches.list()).data]
    assert alices == [a.id] and bobs == [b.id]
    assert everyone == [b.id, a.id]


async def test_batch_output_files_belong_to_the_batch_owner(live: Live) -> None:
    async with live.openai(ALICE) as alice, live.openai(BOB) as bob, live.openai(ADMIN) as admin:
        _, created = await upload_and_submit(alice)
        batch = await finished(alice, created.id)
        assert batch.output_file_id
        out = (await alice.files.content(batch.output_file_id)).text
        with pytest.raises(openai.NotFoundError):
            await bob.files.content(batch.output_file_id)
        assert (await admin.files.content(batch.output_file_id)).text == out
    assert json.loads(out)["custom_id"] == "q1"


async def test_client_key_cannot_rate_or_read_another_keys_response(live: Live) -> None:
    async with live.openai(ALICE) as alice:
        reply = await alice.chat.completions.create(model="m", messages=MSG)  # type: ignore[arg-type]
    rating = {"response_id": reply.id, "rating": 5}
    by_bob = await live.http.post("/v1/feedback", json=rating, headers=bearer(BOB))
    bob_reads = await live.http.get(f"/v1/feedback/{reply.id}", headers=bearer(BOB))
    by_alice = await live.http.post("/v1/feedback", json={**rating, "rating": 2}, headers=bearer(ALICE))
    alice_reads = await live.http.get(f"/v1/feedback/{reply.id}", headers=bearer(ALICE))
    admin_reads = await live.http.get(f"/v1/feedback/{reply.id}", headers=bearer(ADMIN))
    assert by_bob.status_code == 404 and by_bob.json()["error"]["param"] == "response_id"
    assert bob_reads.status_code == 404
    assert by_alice.status_code == 200
    assert [r["rating"] for r in alice_reads.json()["data"]] == [2]
    assert [r["rating"] for r in admin_reads.json()["data"]] == [2]
    ledger = live.gateway.observer.ledger  # type: ignore[union-attr]
    assert ledger is not None
    assert ledger.db.execute("SELECT owner FROM feedback").fetchall() == [(key_id(ALICE),)]


async def test_client_purge_is_scoped_to_its_own_tenant(live: Live) -> None:
    body = {"model": "m", "messages": MSG, "temperature": 0, "thrifty": {"cache": {"namespace": "docs"}}}

    async def cache(key: str) -> str:
        r = await live.http.post("/v1/chat/completions", json=body, headers=bearer(key))
        return r.headers["x-thrifty-cache"]

    assert (await cache(ALICE)).startswith("miss") and (await cache(BOB)).startswith("miss")
    purged = await live.http.post("/v1/cache/purge", json={"namespace": "docs"}, headers=bearer(BOB))
    assert purged.status_code == 200 and purged.json()["removed"] == 1
    assert await cache(ALICE) == "hit-exact"  # Bob's purge did not reach Alice's answers
    assert (await cache(BOB)).startswith("miss")
    spoof = await live.http.post(
        "/v1/cache/purge", json={"namespace": "docs", "tenant": key_id(ALICE)}, headers=bearer(BOB)
    )
    assert spoof.json()["removed"] == 0 and spoof.json()["tenant"] == f"{key_id(BOB)}/{key_id(ALICE)}"
    assert await cache(ALICE) == "hit-exact"
    admin = await live.http.post(
        "/v1/cache/purge", json={"namespace": "docs", "tenant": key_id(ALICE)}, headers=bearer(ADMIN)
    )
    assert admin.json()["removed"] == 1  # an admin reaches any tenant
    assert (await cache(ALICE)).startswith("miss")


async def test_only_an_admin_purges_a_namespace_in_every_tenant(live: Live) -> None:
    body = {"model": "m", "messages": MSG, "temperature": 0, "thrifty": {"cache": {"namespace": "docs"}}}
    other = {**body, "thrifty": {"cache": {"namespace": "notes"}}}

    async def cache(key: str, request: dict[str, Any] = body, tenant: str = "") -> str:
        headers = {**bearer(key), **({"x-thrifty-tenant": tenant} if tenant else {})}
        r = await live.http.post("/v1/chat/completions", json=request, headers=headers)
        return r.headers["x-thrifty-cache"]

    for key, tenant in ((ALICE, ""), (ALICE, "team"), (BOB, "")):
        assert (await cache(key, tenant=tenant)).startswith("miss")
    await cache(BOB, other)
    star = await live.http.post(
        "/v1/cache/purge", json={"namespace": "docs", "tenant": "*"}, headers=bearer(BOB)
    )
    assert star.json()["removed"] == 0  # a client's "*" is a sub-tenant of its own, not a wildcard
    purged = await live.http.post("/v1/cache/purge", json={"namespace": "docs"}, headers=bearer(ADMIN))
    assert purged.status_code == 200 and purged.json()["removed"] == 3
    for key, tenant in ((ALICE, ""), (ALICE, "team"), (BOB, "")):
        assert (await cache(key, tenant=tenant)).startswith("miss")
    assert await cache(BOB, other) == "hit-exact"  # another namespace is untouched


# -- bounds on what a caller may send ------------------------------------------------------


@pytest.fixture
async def small(tmp_path: Path) -> AsyncIterator[Live]:
    async with Live(tmp_path, max_body_bytes=2000, max_file_bytes=50_000) as running:
        yield running


async def test_feedback_body_over_limit_is_413(small: Live) -> None:
    r = await small.http.post(
        "/v1/feedback", json={"response_id": "x", "rating": 1, "comment": "y" * 5000}, headers=bearer(ALICE)
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "payload_too_large" and "2000" in r.json()["error"]["message"]


@pytest.mark.parametrize("path", ["/v1/feedback", "/v1/batches", "/v1/cache/purge", "/v1/embeddings"])
async def test_every_json_route_refuses_a_body_over_max_body_bytes(small: Live, path: str) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the bound holds while streaming
        yield b'{"pad": "'
        for _ in range(10):
            yield b"z" * 1000
        yield b'"}'

    declared = await small.http.post(path, content=b"{" + b" " * 3000 + b"}", headers=bearer(ADMIN))
    streamed = await small.http.post(path, content=chunks(), headers=bearer(ADMIN))
    assert (declared.status_code, streamed.status_code) == (413, 413)
    assert streamed.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("path", ["/v1/feedback", "/v1/batches", "/v1/cache/purge", "/v1/embeddings"])
async def test_every_json_route_refuses_deep_nesting_as_400(live: Live, path: str) -> None:
    deep = '{"response_id": "r", "rating": 1, "comment": ' + "[" * 1000 + "]" * 1000 + "}"
    r = await live.http.post(path, content=deep.encode(), headers=bearer(ADMIN))
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "json_too_deep" and r.json()["error"]["param"] == "comment"


async def test_feedback_nested_1000_deep_is_400(live: Live) -> None:
    deep = '{"response_id": "r", "rating": 1, "comment": ' + "[" * 1000 + "]" * 1000 + "}"
    r = await live.http.post("/v1/feedback", content=deep.encode(), headers=bearer(ALICE))
    assert r.status_code == 400 and r.json()["error"]["message"]


@pytest.mark.parametrize("field", ["response_id", "comment"])
async def test_lone_surrogate_in_feedback_is_400(live: Live, field: str) -> None:
    body = {"response_id": "chatcmpl-1", "rating": 3, field: "bad \ud800 text"}
    raw = json.dumps(body).encode()  # json.dumps escapes it as \ud800, as a careless client would
    r = await live.http.post("/v1/feedback", content=raw, headers=bearer(ALICE))
    assert r.status_code == 400 and "surrogate" in r.json()["error"]["message"]


async def test_upload_over_max_file_bytes_is_413(small: Live) -> None:
    boundary = "thriftyboundary"

    async def multipart() -> AsyncIterator[bytes]:  # streamed without Content-Length
        yield (
            f'--{boundary}\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            f'--{boundary}\r\ncontent-disposition: form-data; name="file"; filename="big.jsonl"\r\n'
            "content-type: application/jsonl\r\n\r\n"
        ).encode()
        for _ in range(200):
            yield JSONL * 100
        yield f"\r\n--{boundary}--\r\n".encode()

    r = await small.http.post(
        "/v1/files",
        content=multipart(),
        headers={**bearer(ALICE), "content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    files = Path(small.gateway.config.server.data_dir) / "files"
    assert not files.exists() or not any(files.iterdir())


async def test_upload_within_max_file_bytes_is_stored_whole(small: Live) -> None:
    data = JSONL * 300  # ~40 KB: well over the JSON body limit, under the file limit
    async with small.openai(ALICE) as alice:
        upload = await alice.files.create(file=("in.jsonl", data), purpose="batch")
        back = (await alice.files.content(upload.id)).content
    assert upload.bytes == len(data) and back == data


async def test_malformed_multipart_is_openai_error_json(live: Live) -> None:
    r = await live.http.post(
        "/v1/files",
        content=b"--x\r\nnot a part",
        headers={**bearer(ALICE), "content-type": "multipart/form-data; boundary=x"},
    )
    plain = await live.http.post(
        "/v1/files",
        content=b"purpose=batch",
        headers={**bearer(ALICE), "content-type": "application/x-www-form-urlencoded"},
    )
    for response in (r, plain):
        assert response.status_code == 400
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}


# -- embeddings -------------------------------------------------------------------------


async def test_embeddings_over_max_inputs_is_400_naming_input(tmp_path: Path) -> None:
    async with Live(tmp_path, max_embedding_inputs=3) as live:
        r = await live.http.post(
            "/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": ["a"] * 4}, headers=bearer(ALICE)
        )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "input" and "max_embedding_inputs" in r.json()["error"]["message"]


async def test_embeddings_over_max_tokens_is_400_naming_input(tmp_path: Path) -> None:
    async with Live(tmp_path, max_embedding_tokens=100) as live:
        r = await live.http.post(
            "/v1/embeddings",
            json={"model": "all-minilm-l6-v2", "input": ["word " * 100]},
            headers=bearer(ALICE),
        )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "input" and "max_embedding_tokens" in r.json()["error"]["message"]


@pytest.fixture
def blocked_embedder(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, list[str]]]:
    """The local embedder replaced by one that holds its thread until released."""
    release = threading.Event()
    threads: list[str] = []

    def embed(embedder: object, texts: list[str]) -> tuple[list[list[float]], int]:
        threads.append(threading.current_thread().name)
        release.wait(30)
        return [[0.0, 1.0] for _ in texts], len(texts)

    monkeypatch.setattr("thrifty.gateway._local_embed", embed)
    yield release, threads
    release.set()


async def test_metrics_answers_while_embeddings_saturate_the_cpu_pool(
    tmp_path: Path, blocked_embedder: tuple[threading.Event, list[str]]
) -> None:
    release, threads = blocked_embedder
    body = {"model": "all-minilm-l6-v2", "input": ["hello"]}
    async with Live(tmp_path, cpu_workers=1) as live:
        # more blocked embeddings than asyncio's default executor has threads
        calls = [
            asyncio.create_task(live.http.post("/v1/embeddings", json=body, headers=bearer(ALICE)))
            for _ in range(40)
        ]
        while not threads:
            await asyncio.sleep(0.01)
        metrics = await live.http.get("/metrics", headers=bearer(ADMIN), timeout=20)
        release.set()
        done = await asyncio.gather(*calls)
    assert metrics.status_code == 200
    assert [r.status_code for r in done] == [200] * 40
    assert set(threads) == {threads[0]} and threads[0].startswith("thrifty-cpu")


# -- the dashboard's session ---------------------------------------------------------------


async def test_dashboard_login_sets_http_only_cookie(live: Live) -> None:
    r = await live.http.post("/dashboard/login", data={"key": ADMIN})
    assert r.status_code == 303 and r.headers["location"] == "../dashboard"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/dashboard" in cookie
    assert ADMIN not in r.headers["set-cookie"]  # a random session token, not the key
    assert r.headers["referrer-policy"] == "no-referrer"
    stats = await live.http.get("/dashboard/api/stats")  # the client kept the cookie
    assert stats.status_code == 200 and "totals" in stats.json()


async def test_dashboard_login_refuses_wrong_and_client_keys(live: Live) -> None:
    wrong = await live.http.post("/dashboard/login", data={"key": "sk-guess"})
    client = await live.http.post("/dashboard/login", data={"key": ALICE})
    assert wrong.headers["location"] == "../dashboard?login=failed"
    assert client.headers["location"] == "../dashboard?login=admin"
    assert "set-cookie" not in wrong.headers and "set-cookie" not in client.headers
    assert (await live.http.get("/dashboard/api/stats")).status_code == 401


async def test_dashboard_logout_ends_the_session(live: Live) -> None:
    await live.http.post("/dashboard/login", data={"key": ADMIN})
    token = live.http.cookies["thrifty_session"]
    await live.http.post("/dashboard/logout")
    assert "thrifty_session" not in live.http.cookies
    reused = await live.http.get("/dashboard/api/stats", headers={"cookie": f"thrifty_session={token}"})
    assert reused.status_code == 401 and reused.json()["error"]["code"] == "session_expired"


async def test_dashboard_responses_send_no_referrer(live: Live) -> None:
    for path in ("/dashboard", "/dashboard/static/dashboard.js", "/dashboard/api/stats"):
        r = await live.http.get(path, headers=bearer(ADMIN))
        assert r.headers["referrer-policy"] == "no-referrer", path


async def test_the_dashboard_script_never_reads_a_key_from_the_url(live: Live) -> None:
    script = (await live.http.get("/dashboard/static/dashboard.js")).text
    assert 'params.get("key")' not in script and "Authorization" not in script


async def test_expired_sessions_are_refused() -> None:
    now = [0.0]
    access = Access(parse_config({"server": {"api_keys": [ADMIN]}}).server, clock=lambda: now[0])
    _, token = await access.login(ADMIN)
    assert access.session(token) is not None
    now[0] = 13 * 3600.0
    assert access.session(token) is None


def test_key_id_is_the_gateways_key_hash() -> None:
    gateway = Gateway(parse_config({}), backends={}, observe=False)
    assert key_id(ALICE) == gateway.key_hash(ALICE) and key_id("") == ""
