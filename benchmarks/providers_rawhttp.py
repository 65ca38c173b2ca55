"""RawTransport (asyncio + httptools) against aiohttp, posting to a fake upstream.

The fake upstream (`python -m thrifty.fakeupstream`, its own process, 127.0.0.1) answers at
once. In this process, at concurrency 1 and 10, three clients post the same chat request for
a fixed time each:
  * aiohttp:   a bare aiohttp ClientSession loop (post, read the body),
  * Aiohttp:   thrifty's AiohttpTransport.post (the current default),
  * Raw:       thrifty's RawTransport.post.
Rounds alternate between clients; the table gives medians over rounds of requests/s, p50 and
p99 latency, and this process's CPU time per request (the cost the gateway pays).

    .venv/bin/python benchmarks/providers_rawhttp.py [--seconds 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from thrifty.providers.http import AiohttpTransport, HttpRequest  # noqa: E402
from thrifty.providers.rawhttp import RawTransport  # noqa: E402

BODY = orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "Say ok."}], "max_tokens": 8})
HEADERS = {"content-type": "application/json", "authorization": "Bearer sk-test"}
Post = Callable[[], Awaitable[int]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_ready(port: int) -> None:
    for _ in range(100):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError("the fake upstream did not start")


async def run(post: Post, concurrency: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            started = time.perf_counter()
            status = await post()
            latencies.append(time.perf_counter() - started)
            assert status == 200, status

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    latencies.sort()
    return {
        "rps": len(latencies) / wall,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
        "cpu_us": cpu / len(latencies) * 1e6,
    }


async def bench(url: str, seconds: float, rounds: int) -> list[tuple[int, str, dict[str, float]]]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
    aio, raw = AiohttpTransport(), RawTransport()
    aio.open()
    raw.open()
    request = HttpRequest(url, BODY, HEADERS)

    async def bare() -> int:
        async with session.post(url, data=BODY, headers=HEADERS) as response:
            await response.read()
            return response.status

    async def via_aio() -> int:
        return (await aio.post(request)).status

    async def via_raw() -> int:
        return (await raw.post(request)).status

    clients: dict[str, Post] = {"bare aiohttp": bare, "AiohttpTransport": via_aio, "RawTransport": via_raw}
    rows = []
    try:
        for concurrency in (1, 10):
            for post in clients.values():
                await run(post, concurrency, 0.3)  # warm the pools
            samples: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
            for _ in range(rounds):
                for name, post in clients.items():
                    samples[name].append(await run(post, concurrency, seconds))
            for name, runs in samples.items():
                rows.append((concurrency, name, {k: statistics.median(r[k] for r in runs) for k in runs[0]}))
    finally:
        await session.close()
        await aio.aclose()
        await raw.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per client, concurrency and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "thrifty.fakeupstream", "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, stdout=subprocess.DEVNULL,
    )
    try:
        asyncio.run(wait_ready(port))
        rows = asyncio.run(bench(f"http://127.0.0.1:{port}/v1/chat/completions", args.seconds, args.rounds))
    finally:
        upstream.terminate()
        upstream.wait(10)
    print(f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}")
    print(f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"command: .venv/bin/python benchmarks/providers_rawhttp.py --seconds {args.seconds:g} --rounds {args.rounds}")
    print()
    print("| concurrency | client | requests/s | vs bare aiohttp | p50 ms | p99 ms | client CPU µs/request |")
    print("|---|---|---|---|---|---|---|")
    base = {c: r["rps"] for c, name, r in rows if name == "bare aiohttp"}
    for concurrency, name, r in rows:
        print(f"| {concurrency} | {name} | {r['rps']:.0f} | {r['rps'] / base[concurrency]:.2f}x "
              f"| {r['p50']:.2f} | {r['p99']:.2f} | {r['cpu_us']:.0f} |")


if __name__ == "__main__":
    main()
