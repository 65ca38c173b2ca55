"""Tokens per second of the embedded models, through thrifty and through llama-cpp-python directly.

For each configuration the same chat prompt generates up to 48 tokens at temperature 0, a few
times; the table gives the median decode speed (completion tokens / wall time of the call) and,
for streams, the median time to the first token. The baseline is llama-cpp-python's own
``create_chat_completion`` on the same loaded model, so the thrifty rows show what the worker
thread, the asyncio bridge and the translation cost.

    .venv/bin/python benchmarks/providers_local.py [--reps 3] [--tokens 48] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from thrifty.config import Deployment  # noqa: E402
from thrifty.providers.local import LocalBackend  # noqa: E402
from thrifty.testing import chat  # noqa: E402

PROMPT = "Write a short poem about the sea."


def direct(backend: LocalBackend, tokens: int, **params: Any) -> tuple[float, None]:
    llama = backend._instances[0]
    started = time.perf_counter()
    messages = [{"role": "user", "content": PROMPT}]
    out = llama.create_chat_completion(messages, max_tokens=tokens, temperature=0, **params)
    return out["usage"]["completion_tokens"] / (time.perf_counter() - started), None


def direct_stream(backend: LocalBackend, tokens: int) -> tuple[float, float | None]:
    llama = backend._instances[0]
    started = time.perf_counter()
    messages = [{"role": "user", "content": PROMPT}]
    first = None
    pieces = 0
    for chunk in llama.create_chat_completion(messages, max_tokens=tokens, temperature=0, stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            first = first or time.perf_counter() - started
            pieces += 1
    return pieces / (time.perf_counter() - started), first


async def complete(backend: LocalBackend, tokens: int, **params: Any) -> tuple[float, None]:
    started = time.perf_counter()
    response = await backend.complete(chat(PROMPT, max_tokens=tokens, temperature=0, **params))
    return response.usage.completion_tokens / (time.perf_counter() - started), None


async def stream(backend: LocalBackend, tokens: int) -> tuple[float, float | None]:
    request = chat(PROMPT, max_tokens=tokens, temperature=0)
    started = request.trace.started
    last: dict[str, Any] = {}
    async for chunk in backend.stream(request):
        last = chunk
    return last["usage"]["completion_tokens"] / (time.perf_counter() - started), request.trace.ttft_s


async def measure(model: str, threads: int, args: argparse.Namespace, rows: list[str]) -> None:
    options = {"n_threads": threads, "n_ctx": 1024, "logprobs": model == "smollm2"}
    backend = LocalBackend(Deployment(name=f"local/{model}", provider="local", model=model, options=options))
    loaded = time.perf_counter()
    await backend.start()
    load_s = time.perf_counter() - loaded
    cases: dict[str, Any] = {
        "llama-cpp-python direct (baseline)": lambda: asyncio.to_thread(direct, backend, args.tokens),
        "thrifty complete": lambda: complete(backend, args.tokens),
        "llama-cpp-python direct stream (chunks/s)": lambda: asyncio.to_thread(
            direct_stream, backend, args.tokens
        ),
        "thrifty stream": lambda: stream(backend, args.tokens),
    }
    if model == "smollm2" and threads == 1:
        cases["llama-cpp-python direct + logprobs(top 2)"] = lambda: asyncio.to_thread(
            direct, backend, args.tokens, logprobs=True, top_logprobs=2
        )
        cases["thrifty complete + logprobs(top 2)"] = lambda: complete(
            backend, args.tokens, logprobs=True, top_logprobs=2
        )
    await cases["thrifty complete"]()  # warm-up
    results: dict[str, list[tuple[float, float | None]]] = {name: [] for name in cases}
    for _ in range(args.reps):  # round-robin, so a busy moment on the machine hits every row alike
        for name, case in cases.items():
            results[name].append(await case())
    base = None
    for name, runs in results.items():
        speed = statistics.median(r[0] for r in runs)
        base = base or speed
        ttfts = [r[1] for r in runs if r[1] is not None]
        ttft = f"{statistics.median(ttfts) * 1000:.0f}" if ttfts else "-"
        rows.append(
            f"| {model} | {threads} | {name} | {speed:.1f} | {speed / base:.2f}x | {ttft} | {load_s:.2f} |"
        )
        print(rows[-1], flush=True)
    await backend.aclose()


async def main_async(args: argparse.Namespace) -> list[str]:
    rows = [
        "| model | threads | path | tokens/s (median) | vs baseline | TTFT ms | load s |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    print("\n".join(rows), flush=True)
    for threads in args.threads:
        await measure("smollm2", threads, args, rows)
    await measure("gemma3-270m", 1, args, rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument(
        "--threads",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1],
        help="SmolLM2 thread counts, e.g. 1,2",
    )
    args = parser.parse_args()
    print(
        f"machine: {platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load average {os.getloadavg()[0]:.1f}"
    )
    print(f"command: .venv/bin/python benchmarks/providers_local.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"prompt {PROMPT!r}, up to {args.tokens} tokens, temperature 0, {args.reps} runs per row\n")
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
