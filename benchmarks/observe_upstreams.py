"""What counting upstream failures costs: the balancer's attempt path and the writer's work per event.

Runs the same measurements in two source trees (this one, and another git ref unpacked from
`git archive`), in alternating subprocesses so drift on a shared machine hits both alike:

- hot path: CPU µs per ``Balancer.complete`` over an instant in-process backend (one
  attempt, the path every request takes), and per request that fails over once;
- off the path: CPU µs the observer's writer spends per event (``Observer.absorb``: pricing,
  counters, window, and now the fallback and anomaly counts), and per ``Upstreams`` sample.

    .venv/bin/python benchmarks/observe_upstreams.py --base c421319 [--rounds 6] [--n 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import asyncio, json, sys, tempfile, time
from thrifty.balance import build_group
from thrifty.config import parse_config
from thrifty.errors import UpstreamConnectionError
from thrifty.observe import Observer, RequestEvent
from thrifty.testing import FakeBackend, chat

N = int(sys.argv[1])

class Flaky(FakeBackend):
    async def complete(self, request):
        raise UpstreamConnectionError("refused")

def group(backends):
    # order: the first deployment takes every request while it is available (its breaker never opens)
    deps = [{"name": f"d{i}", "model": "openai/gpt-4o-mini", "order": i + 1} for i in range(len(backends))]
    config = parse_config({"models": [{"name": "g", "deployments": deps, "health_check": False,
                                       "breaker": {"failures": 10**9, "min_requests": 10**9}, "retries": 1, "budget_ratio": 1.0}]},
                          source="b.yaml", environ={"OPENAI_API_KEY": "sk-x"})
    return build_group(config.models[0], backends, config)

async def per_call(g, n):
    request = chat("hi")
    for _ in range(200):
        await g.complete(request)
    began = time.process_time()
    for _ in range(n):
        await g.complete(request)
    return (time.process_time() - began) / n * 1e6

async def main():
    ok = await per_call(group([FakeBackend("ok")]), N)
    g = group([Flaky("x"), FakeBackend("ok")])
    failover = await per_call(g, N // 2)
    config = parse_config({"server": {"data_dir": tempfile.mkdtemp()}}, source="o.yaml")
    obs = Observer(config)
    events = [RequestEvent(request_id=f"r{i}", ts=time.time(), model="fast", deployment="openai/gpt-4o-mini",
                           stream=False, status=200, error_type=None, prompt_tokens=1000, completion_tokens=200,
                           cached_tokens=0, latency_s=0.2, ttft_s=None, overhead_s=0.0004, attempts=1,
                           api_key=f"k{i % 50}", tenant="") for i in range(N)]
    for e in events:
        obs.record(e)
    began = time.process_time()
    obs.absorb()
    absorb = (time.process_time() - began) / N * 1e6
    sample = None
    ups = getattr(obs, "upstreams", None)
    if ups is not None:
        for _ in range(20):
            ups.add(g)
        began = time.process_time()
        for i in range(1000):
            ups.tick(float(i), force=True)
        sample = (time.process_time() - began) / 1000 * 1e6
    print(json.dumps({"complete_us": ok, "failover_us": failover, "absorb_us": absorb, "sample_us": sample}))

asyncio.run(main())
"""


def unpack(ref: str, into: Path) -> Path:
    archive = into / "base.tar"
    subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), ref], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "base", filter="data")
    return into / "base" / "src"


def measure(src: Path, n: int) -> dict[str, float | None]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(n)], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, float | None] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="git ref to compare with (e.g. main)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--n", type=int, default=20000)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"base": unpack(args.base, Path(tmp)), "this": ROOT / "src"}
        runs: dict[str, list[dict[str, float | None]]] = {"base": [], "this": []}
        for i in range(args.rounds):
            for name in ("base", "this") if i % 2 == 0 else ("this", "base"):
                runs[name].append(measure(trees[name], args.n))
                print(name, runs[name][-1], file=sys.stderr, flush=True)
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"date {time.strftime('%Y-%m-%d')}; load average before the run {load:.2f}; command: "
        f"`.venv/bin/python benchmarks/observe_upstreams.py --base {args.base} --rounds {args.rounds} --n {args.n}`\n"
    )
    print("| CPU µs (median of rounds) | base | this | this / base |")
    print("|---|---|---|---|")
    for key, label in (
        ("complete_us", "Balancer.complete, one attempt (hot path)"),
        ("failover_us", "Balancer.complete, a failed attempt then another deployment"),
        ("absorb_us", "writer: absorb one event"),
        ("sample_us", "writer: one Upstreams sample, 20 groups of 2 deployments"),
    ):
        values = {n: [r[key] for r in runs[n] if r[key] is not None] for n in runs}
        med = {n: statistics.median(v) if v else None for n, v in values.items()}
        b, t = med["base"], med["this"]
        ratio = f"{t / b:.3f}" if b and t else "–"
        print(
            f"| {label} | {'–' if b is None else f'{b:.2f}'} | {'–' if t is None else f'{t:.2f}'} | {ratio} |"
        )


if __name__ == "__main__":
    main()
