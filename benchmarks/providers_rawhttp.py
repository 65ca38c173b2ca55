"""RawTransport (asyncio + httptools) against aiohttp, posting to a fake upstream.

The fake upstream (`python -m thrifty.fakeupstream --chunks 20`, its own process, 127.0.0.1)
answers at once. In this process, at concurrency 1 and 10, three clients send the same chat
request (plain, then streamed: 20 SSE chunks read piece by piece) for a fixed time each:
  * bare aiohttp:      an aiohttp ClientSession loop (post, read the body),
  * AiohttpTransport:  thrifty's current default transport,
  * RawTransport:      thrifty's RawTransport.
Rounds alternate between clients; the table gives medians over rounds of requests/s, p50 and
p99 latency, and this process's CPU time per request (the cost the gateway pays).

With --gateway it then runs `thrifty serve` in front of the same upstream twice, with the
default transport and with RawTransport as `shared_transport()` (patched in through a
sitecustomize module on PYTHONPATH), and loads each with wrk at 10 connections.

    .venv/bin/python benchmarks/providers_rawhttp.py [--seconds 3] [--rounds 2] [--gateway]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from thrifty.transport import HttpRequest, Transport  # noqa: E402
from thrifty.transport.aio import AiohttpTransport  # noqa: E402
from thrifty.transport.raw import RawTransport  # noqa: E402

MESSAGE = {"model": "fake", "messages": [{"role": "user", "content": "Say ok."}], "max_tokens": 8}
BODY = orjson.dumps(MESSAGE)
STREAM_BODY = orjson.dumps({**MESSAGE, "stream": True})
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


Row = tuple[str, int, str, dict[str, float]]


def clients(url: str, stream: bool, session: object, aio: Transport, raw: Transport) -> dict[str, Post]:
    import aiohttp

    assert isinstance(session, aiohttp.ClientSession)
    body = STREAM_BODY if stream else BODY
    request = HttpRequest(url, body, HEADERS)

    async def bare() -> int:
        async with session.post(url, data=body, headers=HEADERS) as response:
            async for _ in response.content.iter_any():
                pass
            return response.status

    def through(transport: Transport) -> Post:
        async def post() -> int:
            return (await transport.post(request)).status

        async def read_stream() -> int:
            response = await transport.open_stream(request)
            try:
                async for _ in response.chunks():
                    pass
            finally:
                await response.aclose()
            return response.status

        return read_stream if stream else post

    return {"bare aiohttp": bare, "AiohttpTransport": through(aio), "RawTransport": through(raw)}


async def bench(url: str, seconds: float, rounds: int) -> list[Row]:
    import aiohttp

    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))
    aio, raw = AiohttpTransport(), RawTransport()
    aio.open()
    raw.open()
    rows: list[Row] = []
    try:
        for mode, concurrency in ((m, c) for m in ("post", "stream 20 chunks") for c in (1, 10)):
            kinds = clients(url, mode != "post", session, aio, raw)
            rows += await measure(mode, kinds, concurrency, seconds, rounds)
    finally:
        await session.close()
        await aio.aclose()
        await raw.aclose()
    return rows


async def measure(
    mode: str, clients: dict[str, Post], concurrency: int, seconds: float, rounds: int
) -> list[Row]:
    for post in clients.values():
        await run(post, concurrency, 0.3)  # warm the pools
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in clients}
    for _ in range(rounds):
        for name, post in clients.items():
            samples[name].append(await run(post, concurrency, seconds))
    return [
        (mode, concurrency, name, {k: statistics.median(r[k] for r in runs) for k in runs[0]})
        for name, runs in samples.items()
    ]


SITECUSTOMIZE = """
import functools
import thrifty.providers.http as http
from thrifty.transport.raw import RawTransport
http.shared_transport = functools.cache(RawTransport)
"""


def wrk(url: str, body: bytes, seconds: int, connections: int = 10) -> dict[str, float]:
    script = Path(tempfile.mkdtemp()) / "post.lua"
    payload = body.decode().replace("\\", "\\\\").replace('"', '\\"')
    script.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = "{payload}"\n'
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("P50 %d\\nP99 %d\\n", latency:percentile(50), latency:percentile(99)))\nend\n'
    )
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def number(pattern: str) -> float:
        found = re.search(pattern, out)
        return float(found.group(1)) if found else float("nan")

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "p50": number(r"P50 (\d+)") / 1000,
        "p99": number(r"P99 (\d+)") / 1000,
        "errors": float(errors.group(1)) if errors else 0.0,
    }


def gateway(upstream_port: int, seconds: int, rounds: int) -> list[tuple[str, str, dict[str, float]]]:
    """wrk through `thrifty serve` with each transport as the shared default."""
    folder = Path(tempfile.mkdtemp())
    config = folder / "thrifty.yaml"
    config.write_text(
        f"server: {{data_dir: {folder}}}\nmodel_list:\n  - model_name: fake\n    litellm_params: "
        f"{{model: openai/fake, api_base: http://127.0.0.1:{upstream_port}/v1, api_key: sk-up}}\n"
    )
    (folder / "patch").mkdir()
    (folder / "patch" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    paths = {
        "AiohttpTransport (default)": str(ROOT / "src"),
        "RawTransport": f"{folder / 'patch'}{os.pathsep}{ROOT / 'src'}",
    }
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    for name, pythonpath in paths.items():
        port = free_port()
        server = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "thrifty"),
                "serve",
                "--config",
                str(config),
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            env={**os.environ, "PYTHONPATH": pythonpath},
            stdout=subprocess.DEVNULL,
        )
        try:
            asyncio.run(wait_ready(port))
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            for mode, body in (("post", BODY), ("stream 20 chunks", STREAM_BODY)):
                wrk(url, body, 1)  # warm up
                for _ in range(rounds):
                    samples.setdefault((mode, name), []).append(wrk(url, body, seconds))
        finally:
            server.terminate()
            server.wait(15)
    return [
        (mode, name, {k: statistics.median(r[k] for r in runs) for k in runs[0]})
        for (mode, name), runs in sorted(samples.items())
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per client, concurrency and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--gateway", action="store_true", help="also wrk through thrifty serve (needs wrk)")
    args = parser.parse_args()
    if args.gateway and not shutil.which("wrk"):
        parser.error("--gateway needs wrk: apt-get install -y wrk")
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, "-m", "thrifty.fakeupstream", "--port", str(port), "--chunks", "20"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        stdout=subprocess.DEVNULL,
    )
    try:
        asyncio.run(wait_ready(port))
        rows = asyncio.run(bench(f"http://127.0.0.1:{port}/v1/chat/completions", args.seconds, args.rounds))
        served = gateway(port, max(1, round(args.seconds)), args.rounds) if args.gateway else []
    finally:
        upstream.terminate()
        upstream.wait(10)
    report(args, rows, served)


def report(
    args: argparse.Namespace, rows: list[Row], served: list[tuple[str, str, dict[str, float]]]
) -> None:
    command = f"benchmarks/providers_rawhttp.py --seconds {args.seconds:g} --rounds {args.rounds}"
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}"
    )
    print(f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    print(f"command: .venv/bin/python {command}{' --gateway' if args.gateway else ''}")
    print()
    print(
        "| request | concurrency | client | requests/s | vs bare aiohttp | p50 ms | p99 ms | client CPU µs/request |"
    )
    print("|---|---|---|---|---|---|---|---|")
    base = {(m, c): r["rps"] for m, c, name, r in rows if name == "bare aiohttp"}
    for mode, concurrency, name, r in rows:
        print(
            f"| {mode} | {concurrency} | {name} | {r['rps']:.0f} | {r['rps'] / base[mode, concurrency]:.2f}x "
            f"| {r['p50']:.2f} | {r['p99']:.2f} | {r['cpu_us']:.0f} |"
        )
    if served:
        print()
        print(
            "| through thrifty serve (wrk, 10 connections) | transport | requests/s | p50 ms | p99 ms | non-2xx |"
        )
        print("|---|---|---|---|---|---|")
        for mode, name, r in served:
            print(
                f"| {mode} | {name} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']:.0f} |"
            )


if __name__ == "__main__":
    main()
