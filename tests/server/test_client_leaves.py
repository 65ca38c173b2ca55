"""A client that leaves: its upstream call is cancelled, and what it was sent is recorded.

Real sockets: ``thrifty``'s app under uvicorn on loopback, a raw TCP client that
sends a request and hangs up, scripted backends that report being cancelled.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from thrifty.config import parse_config
from thrifty.gateway import Gateway
from thrifty.providers.estimate import estimate_tokens
from thrifty.server.app import create_app
from thrifty.testing import FakeBackend
from thrifty.types import ChatRequest, ChatResponse, Chunk, chunk_body

WORDS = ["alpha ", "beta ", "gamma ", "delta "]


class Held(FakeBackend):
    """Starts answering, then waits (for ten minutes) until cancelled; reports both across threads."""

    def __init__(self) -> None:
        super().__init__("never", name="held")
        self.begun = threading.Event()
        self.cancelled = threading.Event()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.begun.set()
        try:
            await asyncio.sleep(600)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("never answers")

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk]:
        request.trace.deployment = self.name
        for word in WORDS:  # content, but no usage chunk: the upstream never finishes
            yield chunk_body(id="x", model="held", delta={"content": word})
        self.begun.set()
        try:
            await asyncio.sleep(600)
        except BaseException:
            self.cancelled.set()
            raise


@contextmanager
def serving(tmp_path: Path, backend: FakeBackend) -> Iterator[tuple[int, Gateway]]:
    config = parse_config({"server": {"data_dir": str(tmp_path)}})
    gateway = Gateway(config, backends={"m": backend})
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(gateway),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            http="httptools",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(1000):
        if server.started:
            break
        time.sleep(0.01)
    try:
        yield port, gateway
    finally:
        server.should_exit = True
        thread.join(30)


def send_then_hang_up(port: int, body: dict[str, Any], backend: Held, *, read_events: int = 0) -> bytes:
    raw = json.dumps(body).encode()
    seen = b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(raw)).encode() + b"\r\n\r\n" + raw
        )
        while seen.count(b"data: ") < read_events:
            seen += sock.recv(65536)
        assert backend.begun.wait(30)
    return seen


def rows(gateway: Gateway) -> list[tuple[Any, ...]]:
    assert gateway.observer is not None
    db = sqlite3.connect(gateway.observer.ledger_settings.path)
    try:
        return list(db.execute("SELECT status, error_type, completion_tokens, annotations FROM requests"))
    finally:
        db.close()


def test_a_client_that_leaves_a_non_streamed_request_cancels_the_upstream_call(tmp_path: Path) -> None:
    backend = Held()
    with serving(tmp_path, backend) as (port, gateway):
        send_then_hang_up(port, {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, backend)
        assert backend.cancelled.wait(30), "the upstream call outlived its client"
    [(status, error, _, _)] = rows(gateway)
    assert (status, error) == (499, "client_closed")


def test_a_stream_cut_by_the_client_records_the_tokens_already_delivered(tmp_path: Path) -> None:
    backend = Held()
    with serving(tmp_path, backend) as (port, gateway):
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        seen = send_then_hang_up(port, body, backend, read_events=len(WORDS))
        assert backend.cancelled.wait(30), "the upstream stream outlived its client"
    assert b"delta" in seen
    [(status, error, completion, annotations)] = rows(gateway)
    assert (status, error) == (499, "client_closed")
    assert completion == estimate_tokens("".join(WORDS)) > 0
    assert json.loads(annotations)["usage"] == "estimated"
