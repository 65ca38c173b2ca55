"""How fast is the cache? Exact hits, semantic lookups at 10k/100k entries, bytes per entry.

    .venv/bin/python benchmarks/cache_speed.py

1. Exact hit: p50/p99 of CacheLayer.complete for a cached request (L1), and through the
   whole in-process Gateway (compose + cache + observer) paced at 300 requests/s, beside
   the same Gateway without a cache section calling a zero-delay fake upstream (baseline).
2. Semantic lookup (search + verifier, embedding excluded; embedding a question is measured
   separately) with 10k and 100k questions in ONE partition (the worst case: a single-turn
   app), brute force vs HNSW side by side. Vectors: random unit vectors (the hardest case
   for HNSW: no cluster structure); queries: stored vectors plus noise, so candidates pass
   the threshold and reach the verifier.
3. Bytes per entry: the index's own estimate and the process RSS growth while filling it;
   L2 file bytes per answer.

Writes the tables into docs/bench/cache.md (between the speed markers) and
docs/img/cache_speed.png.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from thrifty.cache.layer import CacheLayer  # noqa: E402
from thrifty.cache.semantic import Question, SemanticIndex  # noqa: E402
from thrifty.cache.settings import CacheSettings, StoreSettings  # noqa: E402
from thrifty.cache.store import CacheStore  # noqa: E402
from thrifty.testing import FakeBackend, chat  # noqa: E402

DOC = ROOT / "docs" / "bench" / "cache.md"


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(np.array(samples) * 1000, q))


async def paced(one: Callable[[], Awaitable[None]], rate: float, seconds: float) -> float:
    """Start ``one()`` at a steady ``rate`` (open loop) for ``seconds``; the wall time taken."""
    tasks = []
    begin = time.perf_counter()
    for i in range(int(rate * seconds)):
        delay = begin + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one()))
    await asyncio.gather(*tasks)
    return time.perf_counter() - begin


async def exact_layer(n: int = 5000) -> dict[str, float]:
    store = CacheStore(StoreSettings(l2_path=None))
    await store.start()
    layer = CacheLayer(FakeBackend("a cached answer of a few words"), "g", CacheSettings(enabled=True), store)
    await layer.complete(chat("What is the capital of France?", model="g", temperature=0))
    times = []
    for _ in range(n):
        request = chat("What is the capital of France?", model="g", temperature=0)
        start = time.perf_counter()
        await layer.complete(request)
        times.append(time.perf_counter() - start)
    await store.stop()
    return {"p50": pct(times, 50), "p99": pct(times, 99)}


async def gateway_paced(cache: bool, rate: float = 300.0, seconds: float = 5.0) -> dict[str, float]:
    from thrifty.config import parse_config
    from thrifty.gateway import Gateway

    with tempfile.TemporaryDirectory() as tmp:
        data: dict[str, Any] = {
            "server": {"data_dir": tmp},
            "models": [
                {
                    "name": "g",
                    "deployments": [
                        {"provider": "fake", "model": "m", "options": {"script": "a cached answer"}}
                    ],
                }
            ],
        }
        if cache:
            data["cache"] = {"l2_path": f"{tmp}/c.sqlite3"}
        gateway = Gateway(parse_config(data, source="bench"))
        await gateway.start()
        await gateway.complete(chat("warm", model="g", temperature=0))
        times: list[float] = []

        async def one() -> None:
            request = chat("warm", model="g", temperature=0)
            start = time.perf_counter()
            await gateway.complete(request)
            times.append(time.perf_counter() - start)

        elapsed = await paced(one, rate, seconds)  # times fills while this runs
        achieved = len(times) / elapsed
        await gateway.aclose()
    return {"p50": pct(times, 50), "p99": pct(times, 99), "rate": achieved}


async def http_paced(cache: bool, rate: float = 300.0, seconds: float = 5.0) -> dict[str, float]:
    """`thrifty serve` in a subprocess on loopback; an aiohttp client sends paced requests."""
    import socket
    import subprocess

    import aiohttp
    import yaml

    with tempfile.TemporaryDirectory() as tmp, socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        data: dict[str, Any] = {
            "server": {"data_dir": tmp, "port": port},
            "models": [
                {
                    "name": "g",
                    "deployments": [
                        {"provider": "fake", "model": "m", "options": {"script": "a cached answer"}}
                    ],
                }
            ],
        }
        if cache:
            data["cache"] = {"l2_path": f"{tmp}/c.sqlite3"}
        Path(f"{tmp}/t.yaml").write_text(yaml.safe_dump(data))
        server = subprocess.Popen(
            [sys.executable, "-m", "thrifty", "serve", "-c", f"{tmp}/t.yaml", "--log-level", "warning"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            return await _drive(f"http://127.0.0.1:{port}", rate, seconds, aiohttp)
        finally:
            server.terminate()
            server.wait(timeout=10)


async def _drive(base: str, rate: float, seconds: float, aiohttp: Any) -> dict[str, float]:
    body = {"model": "g", "messages": [{"role": "user", "content": "warm"}], "temperature": 0}
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"{base}/ready") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
        for _ in range(20):  # warm up: the first request fills the cache
            async with session.post(f"{base}/v1/chat/completions", json=body) as r:
                await r.read()
        times: list[float] = []
        overhead: list[float] = []
        hits = 0

        async def one() -> None:
            nonlocal hits
            start = time.perf_counter()
            async with session.post(f"{base}/v1/chat/completions", json=body) as r:
                await r.read()
                hits += r.headers.get("x-thrifty-cache") == "hit-exact"
                overhead.append(float(r.headers.get("x-thrifty-overhead-ms", "nan")) / 1000)
            times.append(time.perf_counter() - start)

        elapsed = await paced(one, rate, seconds)  # times fills while this runs
        achieved = len(times) / elapsed
    return {
        "p50": pct(times, 50),
        "p99": pct(times, 99),
        "rate": achieved,
        "server_p50": pct(overhead, 50),
        "server_p99": pct(overhead, 99),
        "hits": hits / len(times),
    }


def semantic(n: int, hnsw_after: int, queries: int = 1000) -> dict[str, float]:
    rng = np.random.default_rng(n)
    vectors = rng.normal(size=(n, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    before = rss()
    index = SemanticIndex(lambda texts: None, time.time, hnsw_after=hnsw_after)
    start = time.perf_counter()
    for i in range(n):
        index.add(
            "p",
            Question(
                f"{i:040x}", "default", f"how do i reset the password of account {i}", time.time() + 3600
            ),
            vectors[i],
        )
    build = time.perf_counter() - start
    grown = rss() - before
    noisy = vectors[rng.integers(0, n, queries)] + rng.normal(scale=0.01, size=(queries, 384)).astype(
        np.float32
    )
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    times = []
    for q in noisy:
        start = time.perf_counter()
        index.lookup("p", "how do i reset the password of account 7", q, 0.9, True)
        times.append(time.perf_counter() - start)
    kind = index._parts["p"].kind
    return {
        "n": n,
        "kind": kind,
        "p50": pct(times, 50),
        "p99": pct(times, 99),
        "build_s": build,
        "bytes_est": index.nbytes() / n,
        "bytes_rss": grown / n,
    }


def embed_latency(n: int = 200) -> dict[str, float]:
    from thrifty.embeddings import Embedder

    embedder = Embedder()
    embedder.embed(["warm up"])
    times = []
    for i in range(n):
        start = time.perf_counter()
        embedder.embed([f"How do I change the delivery address of order {i}?"])
        times.append(time.perf_counter() - start)
    texts = [f"Question number {i} about delivery, refunds and opening hours" for i in range(256)]
    start = time.perf_counter()
    embedder.embed(texts)
    return {"p50": pct(times, 50), "p99": pct(times, 99), "batch_rate": 256 / (time.perf_counter() - start)}


async def disk_bytes(n: int = 2000) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        store = CacheStore(StoreSettings(l2_path=f"{tmp}/c.sqlite3"))
        await store.start()
        answer = "A typical answer of about one hundred words. " * 12
        layer = CacheLayer(FakeBackend(answer), "g", CacheSettings(enabled=True), store)
        for i in range(n):
            await layer.complete(chat(f"question {i}", model="g", temperature=0))
        await store.stop()
        size = sum(os.path.getsize(f"{tmp}/{f}") for f in os.listdir(tmp))
    return size / n


def plot(rows: list[dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"{int(r['n'] / 1000)}k {r['kind']}" for r in rows]
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["p50"] for r in rows], 0.4, label="p50")
    ax.bar(x + 0.2, [r["p99"] for r in rows], 0.4, label="p99")
    ax.set_xticks(x, labels)
    ax.set_ylabel("ms per semantic lookup (search + verify)")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def write_doc(lines: list[str]) -> None:
    begin, end = "<!-- speed:begin -->", "<!-- speed:end -->"
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Cache benchmarks\n"
    if begin not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    DOC.write_text(
        head + begin + "\n" + "\n".join(lines) + "\n" + end + rest.split(end, 1)[1], encoding="utf-8"
    )


def main() -> None:
    header = (
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average {os.getloadavg()[0]:.1f}; command "
        "`python benchmarks/cache_speed.py`."
    )
    print(header, flush=True)
    layer = asyncio.run(exact_layer())
    with_cache = asyncio.run(gateway_paced(True))
    without = asyncio.run(gateway_paced(False))
    http_cache = asyncio.run(http_paced(True))
    http_plain = asyncio.run(http_paced(False))
    embed = embed_latency()
    rows = [
        semantic(10_000, 20_000),
        semantic(10_000, 5_000),
        semantic(100_000, 200_000, 300),
        semantic(100_000, 20_000),
    ]
    l2 = asyncio.run(disk_bytes())
    lines = [
        header,
        "",
        "### Exact hits",
        "",
        "| path | p50 ms | p99 ms |",
        "|---|---|---|",
        f"| CacheLayer.complete, L1 hit | {layer['p50']:.3f} | {layer['p99']:.3f} |",
        f"| Gateway (in-process) with cache, hits at {with_cache['rate']:.0f} req/s | "
        f"{with_cache['p50']:.3f} | {with_cache['p99']:.3f} |",
        f"| Gateway (in-process) without cache, zero-delay fake upstream at {without['rate']:.0f} req/s | "
        f"{without['p50']:.3f} | {without['p99']:.3f} |",
        f"| HTTP `thrifty serve` with cache ({http_cache['hits']:.0%} hit-exact) at {http_cache['rate']:.0f} "
        f"req/s, client-side | {http_cache['p50']:.3f} | {http_cache['p99']:.3f} |",
        f"| same, server-side (`x-thrifty-overhead-ms`) | {http_cache['server_p50']:.3f} | "
        f"{http_cache['server_p99']:.3f} |",
        f"| HTTP `thrifty serve` without cache, zero-delay fake upstream at {http_plain['rate']:.0f} req/s, "
        f"client-side | {http_plain['p50']:.3f} | {http_plain['p99']:.3f} |",
        f"| same, server-side (`x-thrifty-overhead-ms`) | {http_plain['server_p50']:.3f} | "
        f"{http_plain['server_p99']:.3f} |",
        "",
        "### Semantic lookup (one partition; search + verifier; embedding excluded)",
        "",
        "| entries | index | p50 ms | p99 ms | build s | bytes/entry (estimate) | bytes/entry (RSS growth) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {int(r['n']):,} | {r['kind']} | {r['p50']:.3f} | {r['p99']:.3f} | {r['build_s']:.1f} | "
            f"{r['bytes_est']:.0f} | {r['bytes_rss']:.0f} |"
        )
    lines += [
        "",
        f"Embedding one question (MiniLM, numpy): p50 {embed['p50']:.1f} ms, p99 {embed['p99']:.1f} ms; "
        f"batched: {embed['batch_rate']:.0f} texts/s. L2 (SQLite) file bytes per cached answer of "
        f"~540 characters: {l2:.0f}.",
        "",
        "![semantic lookup latency](../img/cache_speed.png)",
    ]
    print("\n".join(lines))
    plot(rows, ROOT / "docs" / "img" / "cache_speed.png")
    write_doc(lines)


if __name__ == "__main__":
    main()
