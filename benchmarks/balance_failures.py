"""One of three replicas fails 30% of requests: what clients see, with and without retries.

Three fake upstream processes (lognormal latency, median 20 ms); a thrifty balanced group
(round robin, real OpenAI-provider backends over loopback HTTP) in front; 8 closed-loop workers.
Baseline in the same run: all replicas healthy.

    .venv/bin/python benchmarks/balance_failures.py [--requests 500] [--reps 3] [--out docs/bench/balance_failures.md]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from balance_common import POOLED_HEAD, Pooled, Result, control, group_over, header, line, load, upstreams

LATENCY = ("--latency", "lognormal", "--latency-ms", "20", "--latency-sigma", "0.25", "--chunks", "8")


async def scenario(ups: list, fault: dict, requests: int, **options: object) -> Result:
    await control(ups[2], reset_stats=True, **{"error_rate": 0.0, "reset_rate": 0.0, **fault})
    group = group_over([(u.name, u.url) for u in ups], strategy="round_robin", health_check=False, **options)
    await group.start()
    try:
        await load(group, requests=50, concurrency=8)  # warm connections
        return await load(group, requests=requests, concurrency=8)
    finally:
        await group.aclose()


CASES = [
    ("30% HTTP 503 on r2, no retries (retries: 0)", {"error_rate": 0.3, "error_status": 503}, {"retries": 0}),
    ("30% HTTP 503 on r2, thrifty retries (defaults)", {"error_rate": 0.3, "error_status": 503}, {}),
    ("30% connection resets on r2, no retries", {"reset_rate": 0.3}, {"retries": 0}),
    ("30% connection resets on r2, thrifty retries", {"reset_rate": 0.3}, {}),
]


async def main(requests: int, reps: int) -> str:
    lines = [
        header("One of three replicas fails 30% of requests"),
        "",
        f"{reps} interleaved reps of {requests} requests per scenario; p50 over all reps pooled, "
        "p99 = median of the reps' p99s (range shown).",
        "",
    ]
    base = Pooled()
    results = [(label, Pooled()) for label, _, _ in CASES]
    with upstreams(3, *LATENCY) as ups:
        for _ in range(reps):
            base.add(await scenario(ups, {}, requests))
            for (_, fault, opts), (_, pooled) in zip(CASES, results, strict=True):
                pooled.add(await scenario(ups, fault, requests, **opts))
    lines += [POOLED_HEAD, line("all healthy (baseline)", base, base)]
    lines += [line(label, r, base) for label, r in results]
    lines += [
        "",
        "added p99 with retries: "
        f"{results[1][1].p99 - base.p99:+.1f} ms (503s), {results[3][1].p99 - base.p99:+.1f} ms (resets)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    text = asyncio.run(main(args.requests, args.reps))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
