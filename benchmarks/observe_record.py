"""Cost of observing a request: thrifty's Observer.record() against prometheus_client.

Measures, in one run on this machine:
- record(): the hot-path call the gateway makes per request (queue append only);
- the deferred work per event (pricing + counters + window + ledger row), done by
  the writer thread, and the SQLite write per row;
- the baseline: updating the same set of series with prometheus_client
  (own CollectorRegistry) on the hot path, as a metrics wrapper would;
- a /metrics scrape, Observer.start() and `import thrifty.observe`.

Run: .venv/bin/python benchmarks/observe_record.py
"""

from __future__ import annotations

import asyncio
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from thrifty.config import parse_config
from thrifty.observe import Observer, RequestEvent
from thrifty.types import CACHE_HIT_EXACT, CACHE_MISS, RouteDecision

N = 100_000
REPEAT = 5


def make_config(data_dir: str) -> Any:
    return parse_config(
        {
            "server": {"data_dir": data_dir},
            "models": [
                {"name": "fast", "deployments": [{"model": "openai/gpt-4o-mini"}]},
                {"name": "smart", "deployments": [{"model": "openai/gpt-4o"}]},
            ],
        },
        environ={"OPENAI_API_KEY": "x"},
    )


def events(n: int) -> list[RequestEvent]:
    now = time.time()
    out = []
    routes = {
        t: RouteDecision(router="auto", policy="rules", tier=t, model=t, score=0.3) for t in ("fast", "smart")
    }
    for i in range(n):
        tier = "fast" if i % 3 else "smart"
        out.append(
            RequestEvent(
                request_id=f"chatcmpl-{i}",
                ts=now,
                model="auto",
                deployment=f"{tier}/openai/gpt-4o" + ("-mini" if tier == "fast" else ""),
                stream=bool(i % 2),
                status=200 if i % 50 else 502,
                error_type=None if i % 50 else "upstream_error",
                prompt_tokens=500,
                completion_tokens=120,
                cached_tokens=0,
                latency_s=0.2 + (i % 10) * 0.01,
                ttft_s=0.05 if i % 2 else None,
                overhead_s=0.0003,
                attempts=1,
                api_key="abc123",
                tenant="",
                cache=CACHE_MISS if i % 4 else CACHE_HIT_EXACT,
                route=routes[tier],
                annotations={"route": routes[tier].header(), "cache": "miss" if i % 4 else "hit-exact"},
            )
        )
    return out


# CPU time of the measuring thread: other engineers' jobs share these 2 cores, and
# wall-clock time would count their work too.
clock = time.thread_time


def per_call_us(fn: Any, items: list[Any]) -> float:
    start = clock()
    for item in items:
        fn(item)
    return (clock() - start) / len(items) * 1e6


def bench_record(tmp: str, evs: list[RequestEvent]) -> dict[str, float]:
    record, deferred, write = [], [], []
    for _ in range(REPEAT):
        obs = Observer(make_config(tmp))
        obs.prices.warm()
        record.append(per_call_us(obs.record, evs))
        start = clock()
        obs.absorb()
        deferred.append((clock() - start) / len(evs) * 1e6)
        from thrifty.observe.ledger import Ledger

        obs.ledger = Ledger(f"{tmp}/bench-{len(record)}.db")
        start = clock()
        obs.flush()
        write.append((clock() - start) / len(evs) * 1e6)
        obs.ledger.close()
    return {
        "record": statistics.median(record),
        "deferred": statistics.median(deferred),
        "write": statistics.median(write),
    }


def prometheus_updater() -> Any:
    """The same series updated through prometheus_client, with its own registry."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    reg = CollectorRegistry()
    req = Counter("req", "r", ["model", "deployment", "status"], registry=reg)
    lat = Histogram("lat", "l", ["model"], registry=reg)
    ttft = Histogram("ttft", "t", ["model"], registry=reg)
    over = Histogram("over", "o", registry=reg)
    tok = Counter("tok", "t", ["model", "deployment", "kind"], registry=reg)
    cost = Counter("cost", "c", ["model", "deployment"], registry=reg)
    cache = Counter("cache", "c", ["result", "level"], registry=reg)
    route = Counter("route", "r", ["tier"], registry=reg)

    def update(ev: RequestEvent) -> None:
        req.labels(ev.model, ev.deployment, str(ev.status)).inc()
        lat.labels(ev.model).observe(ev.latency_s)
        if ev.ttft_s is not None:
            ttft.labels(ev.model).observe(ev.ttft_s)
        over.observe(ev.overhead_s)
        tok.labels(ev.model, ev.deployment, "prompt").inc(ev.prompt_tokens)
        tok.labels(ev.model, ev.deployment, "completion").inc(ev.completion_tokens)
        cost.labels(ev.model, ev.deployment).inc(0.0001)
        cache.labels("miss", "").inc()
        route.labels("fast").inc()

    return update


def bench_prometheus_client(evs: list[RequestEvent]) -> float:
    return statistics.median(per_call_us(prometheus_updater(), evs) for _ in range(REPEAT))


def bench_scrape_and_start(tmp: str, evs: list[RequestEvent]) -> dict[str, float]:
    from thrifty.observe.stats import prometheus, snapshot

    obs = Observer(make_config(tmp))
    for ev in evs[:10_000]:
        obs.record(ev)
    obs.absorb()
    scrape = []
    stats = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        prometheus(obs)
        scrape.append(time.perf_counter() - start)
        start = time.perf_counter()
        snapshot(obs)
        stats.append(time.perf_counter() - start)

    async def start_close() -> float:
        o = Observer(make_config(tmp))
        t0 = time.perf_counter()
        await o.start()
        elapsed = time.perf_counter() - t0
        await o.aclose()
        return elapsed

    starts = [asyncio.run(start_close()) for _ in range(REPEAT)]
    imports = []
    for _ in range(3):
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                "import time; t=time.perf_counter(); import thrifty.observe; print(time.perf_counter()-t)",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        imports.append(float(out.stdout))
    return {
        "scrape_ms": statistics.median(scrape) * 1e3,
        "stats_ms": statistics.median(stats) * 1e3,
        "start_ms": statistics.median(starts) * 1e3,
        "import_ms": statistics.median(imports) * 1e3,
    }


def bench_gateway(tmp: str) -> dict[str, float]:
    """Process CPU per Gateway.chat over a FakeBackend, observed vs not (both threads counted)."""
    from thrifty.gateway import Gateway
    from thrifty.testing import FakeBackend

    async def run(observe: bool) -> float:
        gateway = Gateway(make_config(tmp), backends={"fast": FakeBackend("ok")}, observe=observe)
        await gateway.start()
        messages = [{"role": "user", "content": "hi"}]
        for _ in range(500):
            await gateway.chat("fast", messages)
        times = []
        for _ in range(REPEAT):
            start = time.process_time()
            for _ in range(4000):
                await gateway.chat("fast", messages)
            if gateway.observer is not None:
                gateway.observer.flush()  # count the writer's share of these requests
            times.append((time.process_time() - start) / 4000 * 1e6)
        await gateway.aclose()
        return statistics.median(times)

    off = asyncio.run(run(False))
    on = asyncio.run(run(True))
    return {"off": off, "on": on}


def main() -> None:
    print(
        f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    print(f"date: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print("command: .venv/bin/python benchmarks/observe_record.py")
    print(f"{N:,} events, median of {REPEAT} runs, CPU time (not wall clock)\n")
    evs = events(N)
    with tempfile.TemporaryDirectory() as tmp:
        ours = bench_record(tmp, evs)
        base = bench_prometheus_client(evs)
        other = bench_scrape_and_start(tmp, evs)
        gateway = bench_gateway(tmp)
    rows = [
        (
            "hot path per request (on the event loop)",
            f"{ours['record']:.2f} µs",
            f"{base:.2f} µs",
            f"{base / ours['record']:.0f}x less",
        ),
        ("deferred per request (writer thread): price + count", f"{ours['deferred']:.2f} µs", "-", ""),
        ("deferred per request: SQLite row (batched)", f"{ours['write']:.2f} µs", "-", ""),
    ]
    total = ours["record"] + ours["deferred"] + ours["write"]
    rows.append(
        (
            "all work per request (hot path + writer thread)",
            f"{total:.2f} µs",
            f"{base:.2f} µs",
            f"{base / total:.1f}x",
        )
    )
    print(f"| {'measure':<52} | {'thrifty':>10} | {'prometheus_client':>17} | {'ratio':>9} |")
    print(f"|{'-' * 54}|{'-' * 12}|{'-' * 19}|{'-' * 11}|")
    for name, a, b, r in rows:
        print(f"| {name:<52} | {a:>10} | {b:>17} | {r:>9} |")
    print()
    print(f"GET /metrics render after 10k requests: {other['scrape_ms']:.2f} ms")
    print(f"dashboard stats JSON after 10k requests: {other['stats_ms']:.2f} ms")
    print(f"Observer.start() (open ledger, start writer): {other['start_ms']:.2f} ms")
    print(f"import thrifty.observe (cold interpreter): {other['import_ms']:.1f} ms")
    print(
        f"Gateway.chat over a FakeBackend, process CPU: {gateway['off']:.1f} µs/request unobserved, "
        f"{gateway['on']:.1f} µs observed (+{gateway['on'] - gateway['off']:.1f} µs, "
        f"{(gateway['on'] / gateway['off'] - 1) * 100:+.0f}%)"
    )


if __name__ == "__main__":
    main()
