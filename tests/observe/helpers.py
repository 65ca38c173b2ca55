"""Helpers for the observer's tests: events, configs, a live server in a thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from thrifty.config import Config, parse_config
from thrifty.observe import Observer, RequestEvent

MINI = "fast/openai/gpt-4o-mini"
BIG = "smart/openai/gpt-4o"


def event(i: int = 0, **kw: Any) -> RequestEvent:
    fields: dict[str, Any] = {
        "request_id": f"chatcmpl-{i}",
        "ts": time.time(),
        "model": "fast",
        "deployment": MINI,
        "stream": False,
        "status": 200,
        "error_type": None,
        "prompt_tokens": 1000,
        "completion_tokens": 200,
        "cached_tokens": 0,
        "latency_s": 0.25,
        "ttft_s": None,
        "overhead_s": 0.0004,
        "attempts": 1,
        "api_key": "k1",
        "tenant": "",
        "annotations": {},
    }
    fields.update(kw)
    return RequestEvent(**fields)


def make_config(tmp_path: Path, **sections: Any) -> Config:
    data: dict[str, Any] = {
        "server": {"data_dir": str(tmp_path)},
        "models": [
            {"name": "fast", "deployments": [{"model": "openai/gpt-4o-mini"}]},
            {"name": "smart", "deployments": [{"model": "openai/gpt-4o"}]},
            {"name": "local", "deployments": [{"provider": "local", "model": "smollm2"}]},
        ],
        **sections,
    }
    return parse_config(data, source="thrifty.yaml", environ={"OPENAI_API_KEY": "sk-test"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(observer: Observer) -> Iterator[str]:
    """Run the observer's routes on a real loopback server in a thread; yield its URL."""
    import uvicorn
    from starlette.applications import Starlette

    app = Starlette(routes=observer.routes())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    loop = asyncio.new_event_loop()

    def run() -> None:
        loop.run_until_complete(observer.start())
        loop.run_until_complete(server.serve())
        loop.run_until_complete(observer.aclose())
        loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
