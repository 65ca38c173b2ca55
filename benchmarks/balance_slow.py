"""One of three replicas turns 10x slower: p99 under each strategy and with hedging.

Three fake upstream processes (lognormal latency, median 20 ms); then r2's median becomes
200 ms. A thrifty balanced group (real OpenAI-provider backends over loopback HTTP) in front,
8 closed-loop workers. Baseline in the same run: all replicas healthy, round robin.
Target: p99 within 1.5x of the all-healthy case.

    .venv/bin/python benchmarks/balance_slow.py [--requests 500] [--reps 3] [--out docs/bench/balance_slow.md] [--plot docs/img/balance_slow.png]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from balance_common import POOLED_HEAD, Pooled, Result, control, group_over, header, line, load, upstreams

LATENCY = ("--latency", "lognormal", "--latency-ms", "20", "--latency-sigma", "0.25", "--chunks", "8")

CASES: list[tuple[str, dict[str, Any]]] = [
    ("round_robin", {"strategy": "round_robin"}),
    ("weighted (equal weights)", {"strategy": "weighted"}),
    ("least_outstanding", {"strategy": "least_outstanding"}),
    ("p2c (EWMA latency)", {"strategy": "p2c"}),
    ("affinity (no shared prefix: least loaded)", {"strategy": "affinity"}),
    ("round_robin + hedge", {"strategy": "round_robin", "hedge": True}),
    ("least_outstanding + hedge", {"strategy": "least_outstanding", "hedge": True}),
    ("p2c + hedge", {"strategy": "p2c", "hedge": True}),
    ("round_robin + hedge, streaming", {"strategy": "round_robin", "hedge": True, "stream": True}),
    (
        "least_outstanding + hedge, streaming",
        {"strategy": "least_outstanding", "hedge": True, "stream": True},
    ),
]


HEDGES: dict[str, list[float]] = {}  # label -> [hedges sent, hedges won, requests, last delay ms]


async def scenario(ups: list, requests: int, label: str = "", **options: Any) -> Result:
    stream = bool(options.pop("stream", False))
    group = group_over([(u.name, u.url) for u in ups], health_check=False, **options)
    await group.start()
    try:
        await load(group, requests=100, concurrency=8, stream=stream)  # warm connections, EWMA, p95 window
        before = group.status()  # type: ignore[attr-defined]
        result = await load(group, requests=requests, concurrency=8, stream=stream)
        after = group.status()  # type: ignore[attr-defined]
        if options.get("hedge"):
            sent = after["hedges"] - before["hedges"]
            won = after["hedge_wins"] - before["hedge_wins"]
            tally = HEDGES.setdefault(label, [0, 0, 0, 0])
            tally[0] += sent
            tally[1] += won
            tally[2] += result.total
            tally[3] = after["stream_hedge_delay_ms" if stream else "hedge_delay_ms"]
        return result
    finally:
        await group.aclose()


async def main(requests: int, reps: int) -> tuple[str, list[tuple[str, Pooled]]]:
    """Each rep runs every case once (interleaved, so machine noise spreads evenly)."""
    lines = [
        header("One of three replicas turns 10x slower"),
        "",
        f"{reps} interleaved reps of {requests} requests per scenario; p50 over all reps pooled, "
        "p99 = median of the reps' p99s (range shown).",
        "",
    ]
    base = Pooled()
    results = [(label, Pooled()) for label, _ in CASES]
    with upstreams(3, *LATENCY) as ups:
        for _ in range(reps):
            await control(ups[2], latency_ms=20)
            base.add(await scenario(ups, requests, strategy="round_robin"))
            await control(ups[2], latency_ms=200)
            for (label, opts), (_, pooled) in zip(CASES, results, strict=True):
                pooled.add(await scenario(ups, requests, label, **dict(opts)))
    lines += [POOLED_HEAD, line("all healthy, round_robin (baseline)", base, base)]
    lines += [line(f"r2 10x slower, {label}", r, base) for label, r in results]
    lines += ["", "hedging cost:"]
    for label, (sent, won, total, delay) in HEDGES.items():
        lines.append(
            f"- {label}: {sent:.0f} hedges for {total:.0f} requests ({100 * sent / total:.1f}% extra "
            f"load), {won:.0f} won; hedge delay at the end {delay} ms"
        )
    return "\n".join(lines), [("all healthy", base), *results]


def plot(results: list[tuple[str, Pooled]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label.split(" (")[0].replace(", streaming", " (stream)") for label, _ in results]
    fig, ax = plt.subplots(figsize=(11, 5))
    x = range(len(results))
    ax.bar([i - 0.2 for i in x], [r.all.median for _, r in results], width=0.4, label="p50")
    ax.bar([i + 0.2 for i in x], [r.p99 for _, r in results], width=0.4, label="p99 (median of reps)")
    ax.axhline(
        1.5 * results[0][1].p99, color="k", linestyle="--", linewidth=1, label="target: 1.5x healthy p99"
    )
    ax.set_xticks(list(x), labels, fontsize=8, rotation=30, ha="right")
    ax.set_ylabel("latency, ms")
    ax.set_title("One of three replicas 10x slower: latency by strategy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", default=None)
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()
    text, results = asyncio.run(main(args.requests, args.reps))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.plot:
        plot(results, args.plot)
