"""What tenancy costs on the hot path: no keys, config keys, virtual keys on SQLite, on Redis + PostgreSQL.

In one run, against one instant fake upstream (thrifty.fakeupstream) on loopback, each target a
fresh `thrifty serve` process:

  open        no keys at all
  config-key  one admin key from the config file (constant-time compare, no lookups)
  virtual     a virtual key with rpm, tpm and a budget; SQLite key store, per-process counters
  redis+pg    the same key; counters in a private redis-server, keys and spend in a throwaway
              PostgreSQL cluster (initdb as the `postgres` user when run as root); each replica
              leases 1% of each limit and admits from it in memory (the default)
  redis+pg-exact  the same with `lease_share: 0`: one Redis round trip per request (the old path)

Load: wrk, 1 thread, 10 connections, keep-alive; targets interleaved over --rounds, medians kept.

    .venv/bin/python benchmarks/tenancy.py [--seconds 5] [--rounds 3] [--out docs/bench/tenancy.md]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import glob
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from gateway_overhead import free_port, process  # benchmarks/ is on the path when this script runs
from wrk import run as wrk

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ADMIN = "sk-bench-admin-0123456789"
BODY = {"model": "fake", "messages": [{"role": "user", "content": "Say ok."}], "max_tokens": 8}


def wait(url: str, key: str | None = None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            req = urllib.request.Request(url, headers={"authorization": f"Bearer {key}"} if key else {})
            with urllib.request.urlopen(req, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} not ready")


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    port = free_port()
    folder = tempfile.mkdtemp()
    with process(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder]):
        time.sleep(0.3)
        yield f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def postgres() -> Iterator[str]:
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
    root = Path(tempfile.mkdtemp(prefix="thrifty-pg-"))
    as_user = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    port = free_port()
    data = root / "data"
    subprocess.run(
        [*as_user, f"{bins}/initdb", "-D", str(data), "-U", "thrifty", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
    subprocess.run(
        [*as_user, f"{bins}/pg_ctl", "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://thrifty@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, f"{bins}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def gateway(name: str, upstream: str, redis_url: str, pg_url: str) -> Iterator[tuple[str, str | None]]:
    folder = Path(tempfile.mkdtemp())
    server = (
        f"server: {{data_dir: {folder}}}\n"
        if name == "open"
        else f"server: {{api_keys: [{ADMIN}], data_dir: {folder}}}\n"
    )
    tenancy = ""
    if name.startswith("redis+pg"):
        share = ", lease_share: 0" if name.endswith("exact") else ""
        tenancy = f'tenancy: {{database_url: "{pg_url}", redis_url: "{redis_url}"{share}}}\n'
    cfg = folder / "thrifty.yaml"
    cfg.write_text(
        server
        + tenancy
        + (
            "models:\n  - name: fake\n    deployments:\n"
            f'      - {{provider: openai, model: m, api_base: "{upstream}", api_key: sk-up, price_model: gpt-4o-mini}}\n'
        )
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        str(Path(PY).parent / "thrifty"),
        "serve",
        "--config",
        str(cfg),
        "--port",
        str(port),
        "--log-level",
        "warning",
    ]
    with process(cmd):
        wait(base + "/ready")
        key: str | None = None if name == "open" else ADMIN
        if name != "open" and name != "config-key":
            body = json.dumps(
                {
                    "name": f"bench-{time.time_ns()}",
                    "rpm": 10_000_000,
                    "tpm": 10_000_000_000,
                    "budget": "1000000/month",
                }
            ).encode()
            req = urllib.request.Request(
                base + "/admin/keys",
                data=body,
                method="POST",
                headers={"authorization": f"Bearer {ADMIN}", "content-type": "application/json"},
            )
            with urllib.request.urlopen(req) as r:
                key = json.loads(r.read())["secret"]
        yield base + "/v1/chat/completions", key


def counters_cell(redis_url: str, share: float, requests: int = 3000, tasks: int = 10) -> dict[str, float]:
    """Admission + settlement alone, in process: ``tasks`` concurrent loops on one RedisCounters."""
    import asyncio

    sys.path.insert(0, str(ROOT / "src"))
    from thrifty.tenancy.counters import Check, RedisCounters

    async def run() -> dict[str, float]:
        counters = RedisCounters(redis_url, lease_share=share)
        name = f"bench{time.time_ns()}"
        latencies: list[float] = []

        async def loop(worker: int) -> None:
            for i in range(requests // tasks):
                checks = [
                    Check("rate", f"rpm:key:{name}", 1e7, 1, 60.0),
                    Check("rate", f"tpm:key:{name}", 1e10, 40, 60.0),
                    Check("budget", f"usd:key:{name}:0", 1e6, 0.001, 86400.0),
                ]
                start = time.perf_counter()
                verdict = await counters.admit(checks, f"{worker}-{i}")
                latencies.append(time.perf_counter() - start)
                assert verdict.admitted
                counters.settle([(checks[1], -20), (checks[2], -0.0005)], f"{worker}-{i}", time.time())

        start = time.perf_counter()
        await asyncio.gather(*(loop(w) for w in range(tasks)))
        elapsed = time.perf_counter() - start
        trips = counters.round_trips
        await counters.aclose()
        return {
            "ops": requests / elapsed,
            "p50_us": statistics.median(latencies) * 1e6,
            "trips": trips / requests,
        }

    return asyncio.run(run())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--out", default=str(ROOT / "docs" / "bench" / "tenancy.md"))
    args = parser.parse_args()
    names = ["open", "config-key", "virtual", "redis+pg-exact", "redis+pg"]
    samples: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    load = os.getloadavg()[0]
    up_port = free_port()
    with (
        process([PY, "-m", "thrifty.fakeupstream", "--port", str(up_port), "--chunks", "1"]),
        redis_server() as redis_url,
        postgres() as pg_url,
    ):
        upstream = f"http://127.0.0.1:{up_port}/v1"
        wait(upstream.replace("/v1", "/health"))
        for _ in range(args.rounds):
            for name in names:
                with gateway(name, upstream, redis_url, pg_url) as (url, key):
                    body = dict(BODY)
                    wrk(url, 1, 2, body, key=key)  # warm up
                    r = wrk(url, args.connections, args.seconds, body, key=key)
                    samples[name].append(r)
                    print(name, r, file=sys.stderr, flush=True)
        counter_runs: dict[str, list[dict[str, float]]] = {"exact (lease_share 0)": [], "leased (0.01)": []}
        for _ in range(args.rounds):
            for label, share in (("exact (lease_share 0)", 0.0), ("leased (0.01)", 0.01)):
                counter_runs[label].append(counters_cell(redis_url, share))
    med = {n: {m: statistics.median(s[m] for s in runs) for m in runs[0]} for n, runs in samples.items()}
    cmed = {
        n: {m: statistics.median(s[m] for s in runs) for m in runs[0]} for n, runs in counter_runs.items()
    }
    base = med["open"]
    lines = [
        "## Tenancy on the hot path (issue 13)",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; date "
        f"{datetime.date.today()}; load average before the run {load:.2f}; command: "
        f"`.venv/bin/python benchmarks/tenancy.py {' '.join(sys.argv[1:])}`.",
        f"wrk, 1 thread, {args.connections} connections, {args.seconds} s per cell, {args.rounds} rounds "
        "interleaved, medians; one instant fake upstream; every process on this one machine.",
        "",
        "| target | req/s | p50 ms | p99 ms | errors | req/s vs open | added p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in med.items():
        lines.append(
            f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {int(r['errors'])} "
            f"| {r['rps'] / base['rps']:.2f} | {r['p50_ms'] - base['p50_ms']:+.2f} |"
        )
    lines += [
        "",
        "Admission and settlement alone (in process, one RedisCounters, 10 concurrent loops, 3,000",
        "requests with an rpm, a tpm and a budget check each, same Redis, medians of the rounds):",
        "",
        "| counters | admissions/s | p50 admit µs | Redis round trips per request |",
        "|---|---|---|---|",
    ]
    for name, r in cmed.items():
        lines.append(f"| {name} | {r['ops']:.0f} | {r['p50_us']:.1f} | {r['trips']:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
