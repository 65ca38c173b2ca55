"""What thrifty's provider layer costs per upstream call, against calling the upstream directly.

A fake OpenAI-compatible upstream (aiohttp, its own process, 127.0.0.1) answers at once, or
streams 20 chunks. In this process, at a fixed concurrency, three clients send the same requests:
  * baseline: a bare aiohttp ClientSession posting the JSON and parsing the answer with orjson,
  * thrifty:  OpenAIBackend.complete / .stream over the default AiohttpTransport
              (translation, deadlines, trace timing, SSE decoding, usage chunk),
  * httpx:    httpx.AsyncClient posting the same JSON (the client we did not pick).
Rounds alternate between clients; the table gives medians over rounds.

    .venv/bin/python benchmarks/providers_http.py [--requests 1500] [--rounds 3] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from thrifty.config import Deployment  # noqa: E402
from thrifty.providers.openai import OpenAIBackend  # noqa: E402
from thrifty.testing import chat  # noqa: E402
from thrifty.transport.aio import AiohttpTransport  # noqa: E402

UPSTREAM = r"""
import sys, orjson
from aiohttp import web
ANSWER = orjson.dumps({"id": "c", "object": "chat.completion", "created": 1, "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}})
def chunk(delta, finish=None):
    return b"data: " + orjson.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}) + b"\n\n"
STREAM = (chunk({"role": "assistant", "content": ""}) + b"".join(chunk({"content": " w"}) for _ in range(20))
    + chunk({}, "stop") + b'data: {"id":"c","model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":20,"total_tokens":25}}\n\n'
    + b"data: [DONE]\n\n")
async def handle(request):
    body = orjson.loads(await request.read())
    if body.get("stream"):
        return web.Response(body=STREAM, content_type="text/event-stream")
    return web.Response(body=ANSWER, content_type="application/json")
app = web.Application()
app.router.add_post("/v1/chat/completions", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

BODY = {"model": "m", "messages": [{"role": "user", "content": "Say ok."}], "max_tokens": 8}


async def run(
    call: Callable[[], Awaitable[None]], requests: int, concurrency: int
) -> tuple[float, float, float]:
    """Requests/s, p50 and p99 latency (ms) for ``requests`` calls at ``concurrency``."""
    latencies: list[float] = []
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return (
        requests / elapsed,
        latencies[len(latencies) // 2] * 1000,
        latencies[int(len(latencies) * 0.99)] * 1000,
    )


async def bench(args: argparse.Namespace, url: str) -> dict[str, list[tuple[float, float, float]]]:
    import aiohttp
    import httpx

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
    hx = httpx.AsyncClient(limits=httpx.Limits(max_connections=1000))
    dep = Deployment(name="bench", provider="openai", model="m", api_base=url)
    backend = OpenAIBackend(dep, AiohttpTransport())
    payload = orjson.dumps(BODY)
    stream_payload = orjson.dumps({**BODY, "stream": True})
    headers = {"content-type": "application/json"}

    async def raw() -> None:
        async with session.post(url + "/chat/completions", data=payload, headers=headers) as r:
            orjson.loads(await r.read())

    async def raw_stream() -> None:
        async with session.post(url + "/chat/completions", data=stream_payload, headers=headers) as r:
            async for line in r.content:
                if line.startswith(b"data: {"):
                    orjson.loads(line[6:])

    async def thrifty() -> None:
        await backend.complete(chat("Say ok.", max_tokens=8))

    async def thrifty_stream() -> None:
        async for _ in backend.stream(chat("Say ok.", max_tokens=8)):
            pass

    async def via_httpx() -> None:
        r = await hx.post(url + "/chat/completions", content=payload, headers=headers)
        orjson.loads(r.content)

    clients = {
        "complete / aiohttp direct (baseline)": raw,
        "complete / thrifty OpenAIBackend": thrifty,
        "complete / httpx direct": via_httpx,
        "stream / aiohttp direct (baseline)": raw_stream,
        "stream / thrifty OpenAIBackend": thrifty_stream,
    }
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in clients}
    for call in clients.values():  # warm-up: open the pools
        await run(call, 200, args.concurrency)
    for _ in range(args.rounds):
        for name, call in clients.items():
            results[name].append(await run(call, args.requests, args.concurrency))
    await session.close()
    await hx.aclose()
    await backend.aclose()
    return results


def table(results: dict[str, list[tuple[float, float, float]]]) -> str:
    base = {
        "complete": "complete / aiohttp direct (baseline)",
        "stream": "stream / aiohttp direct (baseline)",
    }
    lines = [
        "| client | requests/s (median) | vs baseline | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, rounds in results.items():
        rps = statistics.median(r[0] for r in rounds)
        base_rps = statistics.median(r[0] for r in results[base[name.split(" /")[0]]])
        p50 = statistics.median(r[1] for r in rounds)
        p99 = statistics.median(r[2] for r in rounds)
        lines.append(f"| {name} | {rps:,.0f} | {rps / base_rps:.2f}x | {p50:.1f} | {p99:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(port)])
    try:
        import urllib.request

        for _ in range(100):
            try:
                urllib.request.urlopen(
                    urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=b"{}"),
                    timeout=1,
                )
                break
            except OSError:
                time.sleep(0.1)
        print(
            f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
        )
        print(f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
        print(f"command: .venv/bin/python benchmarks/providers_http.py {' '.join(sys.argv[1:])}".rstrip())
        print(f"{args.requests} requests x {args.rounds} rounds per client, concurrency {args.concurrency}\n")
        print(table(asyncio.run(bench(args, f"http://127.0.0.1:{port}/v1"))))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
