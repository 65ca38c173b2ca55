"""Helpers for the observer's tests: events, configs, a live server in a thread."""

from __future__ import annotations

import asyncio
import functools
import socket
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from thrifty.backend import Backend
from thrifty.balance.fallbacks import FallbackChain
from thrifty.cache.layer import CacheLayer
from thrifty.cache.settings import CacheSettings, StoreSettings
from thrifty.cache.store import CacheStore
from thrifty.config import Config, parse_config
from thrifty.errors import UpstreamTimeout
from thrifty.observe import Observer, RequestEvent
from thrifty.routing import build_routers
from thrifty.testing import FakeBackend, chat
from thrifty.types import Trace, trace_notes

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


def served(tier: str = "", cache: str = "", escalations: int = 0, fallback: bool = False) -> dict[str, Any]:
    """The trace facts of one real request, as ``event(**served(...))`` keywords.

    The request goes through the real layers that write them: a router that
    lands on ``tier`` ("" for no router; with ``escalations``, a cascade whose
    cheaper tiers fail first), a cache layer whose answer is ``cache``
    ("miss", "hit-exact", "hit-semantic"; "" for no cache) and, with
    ``fallback``, a fallback chain whose primary fails.
    """
    return dict(_served(tier, cache, escalations, fallback))


@functools.cache
def _served(tier: str, cache: str, escalations: int, fallback: bool) -> tuple[tuple[str, Any], ...]:
    with ThreadPoolExecutor(1) as pool:  # a loop of its own, whether the caller runs one or not
        trace = pool.submit(asyncio.run, _serve(tier, cache, escalations, fallback)).result()
    facts = {
        "cache": trace.cache,
        "route": trace.route,
        "fallback": trace.fallback,
        "annotations": trace_notes(trace),
    }
    return tuple(facts.items())


def _words(texts: Sequence[str]) -> Any:
    """A toy embedding for the semantic cache: hashed lower-case words, unit length."""
    import numpy as np

    out = np.zeros((len(texts), 384), dtype=np.float32)  # the width the index expects
    for row, text in enumerate(texts):
        for word in text.lower().replace("?", " ").split():
            out[row, zlib.crc32(word.encode()) % 384] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


async def _serve(tier: str, cache: str, escalations: int, fallback: bool) -> Trace:
    backend: Backend = FakeBackend("ok", name="upstream")
    if fallback:
        backend = FallbackChain(
            FakeBackend([UpstreamTimeout("slow")], name="primary"), [("backup", backend)], []
        )
    store = None
    if cache:
        store = CacheStore(StoreSettings(), embed=_words)
        semantic = cache == "hit-semantic"
        settings = CacheSettings(enabled=True, store=store.settings, semantic=semantic, threshold=0.8)
        backend = CacheLayer(backend, tier or "group", settings, store)
        await backend.start()
        if cache.startswith("hit"):
            await backend.complete(chat("What is the capital of France today", temperature=0))
            await store.tiers.flush()
    question = (
        "what is the capital of France today?"
        if cache == "hit-semantic"
        else "What is the capital of France today"
    )
    request = chat(question, temperature=0)
    if tier:
        names = [f"cheap{i}" for i in range(escalations)] + [tier]
        config = parse_config(
            {
                "models": [{"name": n, "deployments": [{"provider": "fake", "model": n}]} for n in names],
                "routing": {
                    "tiers": [{"name": n, "model": n, "price": {"input": 1.0, "output": 2.0}} for n in names],
                    "routers": [
                        {"name": "auto", "policy": "cascade" if escalations else "rules", "candidates": names}
                    ],
                },
            },
            source="thrifty.yaml",
        )
        groups: dict[str, Backend] = {n: FakeBackend([UpstreamTimeout("slow")], name=n) for n in names[:-1]}
        groups[tier] = backend
        backend = build_routers(config, groups)["auto"]
        if not escalations:
            request.options["route"] = {"tier": tier}
    await backend.complete(request)
    if store is not None:
        await store.stop()
    assert cache in ("", request.trace.annotations.get("cache")), request.trace.annotations
    return request.trace


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
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
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
