"""The Batch API served by uvicorn on loopback, driven by the real `openai` client."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import openai
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from thrifty.config import ServerConfig
from thrifty.server.access import Access
from thrifty.tasks.batch_server import BatchService, batch_routes
from thrifty.tasks.batch_store import BatchStore
from thrifty.tasks.settings import TasksConfig
from thrifty.testing import FakeBackend
from thrifty.types import ChatRequest, message_text


class Served:
    """Starlette app with the given routes, on 127.0.0.1 at a random port."""

    def __init__(self, routes: list[BaseRoute]) -> None:
        config = uvicorn.Config(
            Starlette(routes=routes), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> openai.AsyncOpenAI:
        self.task = asyncio.create_task(self.server.serve())
        for _ in range(200):
            if self.server.started:
                break
            await asyncio.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.client = openai.AsyncOpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="test", max_retries=0
        )
        return self.client

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()
        self.server.should_exit = True
        assert self.task is not None
        await self.task


def line(custom_id: str, text: str) -> str:
    body = {"model": "fake", "messages": [{"role": "user", "content": text}]}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body})


def jsonl(lines: list[str]) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def echo(request: ChatRequest) -> str:
    return "echo " + message_text(request.messages[-1])


async def wait_until(client: openai.AsyncOpenAI, batch_id: str, done: Callable[[Any], bool]) -> Any:
    for _ in range(600):
        batch = await client.batches.retrieve(batch_id)
        if done(batch):
            return batch
        await asyncio.sleep(0.02)
    raise AssertionError(f"batch {batch_id} never got there: {batch.status}")


def finished(batch: Any) -> bool:
    return batch.status in ("completed", "cancelled", "failed")


async def submit(client: openai.AsyncOpenAI, data: bytes) -> Any:
    upload = await client.files.create(file=("in.jsonl", data), purpose="batch")
    return await client.batches.create(
        input_file_id=upload.id, endpoint="/v1/chat/completions", completion_window="24h"
    )


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[BatchService]:
    svc = BatchService(FakeBackend(echo), str(tmp_path), TasksConfig(max_requests=10))
    yield svc
    await svc.aclose()


async def test_a_batch_runs_to_completion_with_output_and_error_files(tmp_path: Path) -> None:
    lines = [line(f"q{i}", f"n{i}") for i in range(5)] + ["{broken"]
    async with Served(batch_routes(FakeBackend(echo), str(tmp_path))) as client:
        created = await submit(client, jsonl(lines))
        assert created.status == "validating"
        batch = await wait_until(client, created.id, finished)
        assert batch.status == "completed"
        assert batch.request_counts is not None
        assert (batch.request_counts.total, batch.request_counts.completed, batch.request_counts.failed) == (
            6,
            5,
            1,
        )
        assert batch.output_file_id and batch.error_file_id
        out = [json.loads(x) for x in (await client.files.content(batch.output_file_id)).text.splitlines()]
        errors = [json.loads(x) for x in (await client.files.content(batch.error_file_id)).text.splitlines()]
        listed = await client.batches.list(limit=5)
    by_id = {r["custom_id"]: r for r in out}
    assert by_id["q3"]["response"]["status_code"] == 200
    assert by_id["q3"]["response"]["body"]["choices"][0]["message"]["content"] == "echo n3"
    assert errors[0]["error"]["line"] == 6 and errors[0]["error"]["code"] == "invalid_json"
    assert [b.id for b in listed.data] == [created.id]


async def test_duplicate_ids_and_oversized_batches_are_refused(service: BatchService) -> None:
    async with Served(service.routes()) as client:
        with pytest.raises(openai.BadRequestError) as dup:
            await submit(client, jsonl([line("a", "1"), line("a", "2")]))
        with pytest.raises(openai.BadRequestError) as big:
            await submit(client, jsonl([line(f"q{i}", "x") for i in range(11)]))
        assert (await client.batches.list()).data == []
    assert "duplicate custom_id 'a' on lines 1 and 2" in dup.value.message
    assert dup.value.code == "duplicate_custom_id"
    assert "tasks.batch.max_requests = 10" in big.value.message


async def test_bad_requests_get_openai_errors(service: BatchService) -> None:
    async with Served(service.routes()) as client:
        upload = await client.files.create(file=("in.jsonl", jsonl([line("a", "1")])), purpose="batch")
        with pytest.raises(openai.BadRequestError) as endpoint:
            await client.batches.create(
                input_file_id=upload.id, endpoint="/v1/embeddings", completion_window="24h"
            )
        with pytest.raises(openai.NotFoundError):
            await client.batches.create(
                input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
            )
        with pytest.raises(openai.NotFoundError) as missing:
            await client.batches.retrieve("batch_nope")
        with pytest.raises(openai.BadRequestError) as purpose:
            await client.files.create(file=("in.jsonl", b"{}"), purpose="assistants")
    assert endpoint.value.body["param"] == "endpoint"  # type: ignore[index]
    assert missing.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert "purpose" in purpose.value.message


async def test_cancel_stops_a_running_batch_and_keeps_its_results(tmp_path: Path) -> None:
    slow = FakeBackend(echo, delay=0.2)
    svc = BatchService(slow, str(tmp_path), TasksConfig(concurrency=1))
    try:
        async with Served(svc.routes()) as client:
            created = await submit(client, jsonl([line(f"q{i}", str(i)) for i in range(50)]))
            await wait_until(client, created.id, lambda b: b.request_counts.completed >= 1)
            cancelling = await client.batches.cancel(created.id)
            assert cancelling.status in ("cancelling", "cancelled")
            batch = await wait_until(client, created.id, finished)
            assert batch.status == "cancelled"
            assert batch.output_file_id is not None
            kept = (await client.files.content(batch.output_file_id)).text.splitlines()
    finally:
        await svc.aclose()
    assert 1 <= len(kept) < 50
    assert len(slow.requests) < 50


async def test_a_restarted_server_resumes_unfinished_batches(tmp_path: Path) -> None:
    n = 40
    first = BatchService(FakeBackend("first", delay=0.05), str(tmp_path), TasksConfig(concurrency=2))
    async with Served(first.routes()) as client:
        created = await submit(client, jsonl([line(f"q{i}", str(i)) for i in range(n)]))
        await wait_until(client, created.id, lambda b: b.request_counts.completed >= 5)
    await first.aclose()  # the server goes away mid-batch

    second_backend = FakeBackend(echo)
    second = BatchService(second_backend, str(tmp_path), TasksConfig(concurrency=2))
    try:
        async with Served(second.routes()) as client:
            batch = await wait_until(client, created.id, finished)
            out = (await client.files.content(batch.output_file_id or "")).text.splitlines()
    finally:
        await second.aclose()
    assert batch.status == "completed" and batch.request_counts.completed == n
    results = [json.loads(x) for x in out]
    assert sorted(r["custom_id"] for r in results) == sorted(f"q{i}" for i in range(n))
    kept = sum(1 for r in results if r["response"]["body"]["choices"][0]["message"]["content"] == "first")
    assert kept >= 5
    assert len(second_backend.requests) == n - kept  # nothing finished before the restart ran again


async def test_starting_with_no_batches_writes_nothing(tmp_path: Path) -> None:
    svc = BatchService(FakeBackend(echo), str(tmp_path / "data"))
    await svc.start()
    await svc.aclose()
    assert not (tmp_path / "data").exists()


async def test_with_keys_configured_every_batch_route_needs_one(tmp_path: Path) -> None:
    access = Access(ServerConfig(api_keys=("sk-admin",)))
    svc = BatchService(FakeBackend(echo), str(tmp_path), access=access)
    try:
        async with Served(svc.routes()) as client:  # the client sends the key "test"
            with pytest.raises(openai.AuthenticationError):
                await client.files.create(file=("in.jsonl", jsonl([line("a", "1")])), purpose="batch")
            with pytest.raises(openai.AuthenticationError):
                await client.batches.list()
    finally:
        await svc.aclose()
    assert not (tmp_path / "files").exists()


def test_a_store_from_before_owners_gains_the_owner_column(tmp_path: Path) -> None:
    path = tmp_path / "batches.db"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE batches (id TEXT PRIMARY KEY, status TEXT NOT NULL, created_at INTEGER NOT NULL,"
        " data TEXT NOT NULL);"
        "CREATE TABLE files (id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, data TEXT NOT NULL);"
        """INSERT INTO files VALUES ('file-old', 1, '{"id": "file-old"}');"""
    )
    old.commit()
    old.close()
    store = BatchStore(str(path))
    try:
        assert store.file_owner("file-old") == ""  # kept, owned by no key: only admins see it
        store.add_file({"id": "file-new", "created_at": 2}, owner="k1")
        assert store.file_owner("file-new") == "k1"
    finally:
        store.close()
