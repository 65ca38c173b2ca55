"""Prefix affinity vs least outstanding on two real llama.cpp replicas (SmolLM2-135M).

Two `thrifty serve` child processes under the ReplicaSupervisor, each running the embedded
model; a workload of questions about four documents (~300 tokens each, a shared prefix
per document), 2 closed-loop workers. llama.cpp keeps the last prompt's KV cache, so a
replica that sees the same document again skips re-evaluating it. Baseline in the same run:
least outstanding, which spreads each document over both replicas.

    .venv/bin/python benchmarks/balance_affinity.py [--requests 24] [--out docs/bench/balance_affinity.md]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from pathlib import Path

from balance_common import Result, header
from thrifty import providers
from thrifty.backend import Backend
from thrifty.balance import build_group
from thrifty.balance.replicas import replica_config
from thrifty.config import ModelGroup, parse_config
from thrifty.errors import ThriftyError
from thrifty.types import ChatRequest

WORDS = [
    "river",
    "mountain",
    "ledger",
    "harvest",
    "lantern",
    "copper",
    "meadow",
    "signal",
    "orchard",
    "harbor",
    "winter",
    "engine",
    "quarry",
    "thistle",
    "beacon",
    "cobalt",
    "granary",
    "timber",
    "falcon",
    "prairie",
]


DOCS = 4


def document(seed: int, words: int = 200) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(WORDS) for _ in range(words))


def request(doc: int, text: str, i: int) -> ChatRequest:
    messages = [
        {"role": "system", "content": f"Answer from this document only.\n{text}"},
        {"role": "user", "content": f"Question {i}: which word comes first?"},
    ]
    return ChatRequest(model="smollm2", messages=messages, params={"max_tokens": 4, "temperature": 0})


async def run(strategy: str, requests: int) -> tuple[Result, dict[str, int]]:
    base = parse_config(
        {
            "models": [
                {"name": "smollm2", "retries": 1, "deployments": [{"provider": "local", "model": "smollm2"}]}
            ]
        },
        source="bench",
    )
    config = replica_config(base, 2)
    g = config.models[0]
    group = ModelGroup(name=g.name, deployments=g.deployments, options={**g.options, "strategy": strategy})
    backend: Backend = build_group(group, [providers.build(d) for d in group.deployments], config)
    docs = [document(seed) for seed in range(DOCS)]
    rng = random.Random(7)
    order = [rng.randrange(DOCS) for _ in range(requests)]
    result = Result()
    placement: dict[str, int] = {}
    await backend.start()
    try:
        # one warm-up request per replica so model load is not measured
        await asyncio.gather(*(backend.complete(request(0, "warm up", -k)) for k in range(2)))
        queue = list(enumerate(order))

        async def worker() -> None:
            while queue:
                i, doc = queue.pop(0)
                req = request(doc, docs[doc], i)
                start = time.perf_counter()
                try:
                    await backend.complete(req)
                except ThriftyError as exc:
                    result.errors[type(exc).__name__] = result.errors.get(type(exc).__name__, 0) + 1
                    continue
                result.latencies.append(time.perf_counter() - start)
                key = f"doc{doc} -> {req.trace.deployment}"
                placement[key] = placement.get(key, 0) + 1

        await asyncio.gather(worker(), worker())
    finally:
        await backend.aclose()
    return result, placement


async def main(requests: int) -> str:
    lines = [
        header("Prefix affinity vs least outstanding on two llama.cpp replicas"),
        "",
        "| strategy | requests | errors | mean ms | p50 ms | p90 ms | placement |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    rows = []
    for strategy in ("least_outstanding", "affinity"):
        result, placement = await run(strategy, requests)
        mean = 1000 * sum(result.latencies) / max(1, len(result.latencies))
        where = ", ".join(f"{k}: {v}" for k, v in sorted(placement.items()))
        rows.append((strategy, mean))
        lines.append(
            f"| {strategy} | {result.total} | {sum(result.errors.values())} | {mean:.0f} | "
            f"{result.median:.0f} | {result.pct(90):.0f} | {where} |"
        )
    lines += ["", f"mean latency, affinity / least_outstanding: {rows[1][1] / rows[0][1]:.2f}x"]
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=24)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    text = asyncio.run(main(args.requests))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
