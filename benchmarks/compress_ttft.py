"""Time to first token on turn 5 of a conversation on the embedded model, with and without prefix reuse.

    .venv/bin/python benchmarks/compress_ttft.py [--rounds 5] [--model smollm2] [--context 900]

A conversation: a system prompt holding an essay excerpt (~``--context`` tokens) and
five user turns, each answered by the model (16 tokens). llama.cpp keeps the KV cache
of its last prompt and evaluates only what differs, so turn 5, sent right after turn 4,
re-reads the whole shared prefix from the cache (**reuse**). In the **cold** case
another user's short request runs between turn 4 and turn 5 (one instance, as
``thrifty serve`` loads by default), so turn 5 evaluates its whole prompt again. Each
round runs both, alternating which goes first; time to first token is the stream's
first content token after the request is made. Medians and the ratio are reported,
with the cached tokens the provider reported (``prompt_tokens_details.cached_tokens``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from thrifty.config import Deployment
from thrifty.providers.local import LocalBackend
from thrifty.types import ChatRequest

ROOT = Path(__file__).resolve().parents[1]
DATA = next(
    (p / "shared" / "data" for p in ROOT.parents if (p / "shared" / "data").is_dir()),
    ROOT.parent / "shared" / "data",
)
QUESTIONS = (
    "What is the essay about?",
    "Who is it written for?",
    "Which example does it give first?",
    "Does the author change their mind anywhere?",
    "Sum up its advice in one sentence.",
)


def excerpt(words: int) -> str:
    essay = sorted((DATA / "compress" / "essays").glob("*.txt"))[0].read_text(encoding="utf-8")
    return " ".join(essay.split()[:words])


async def turn_ttft(backend: LocalBackend, messages: list[dict[str, Any]]) -> tuple[float, str, int]:
    """(seconds to the first content token, the answer, cached prompt tokens) of one streamed turn."""
    request = ChatRequest(model="m", messages=messages, params={"max_tokens": 16, "temperature": 0})
    started = time.perf_counter()
    first: float | None = None
    parts: list[str] = []
    cached = 0
    async for chunk in backend.stream(request):
        for choice in chunk.get("choices") or ():
            text = (choice.get("delta") or {}).get("content")
            if text:
                first = first if first is not None else time.perf_counter() - started
                parts.append(text)
        usage = chunk.get("usage")
        if usage:
            cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return first if first is not None else time.perf_counter() - started, "".join(parts), cached


async def conversation(backend: LocalBackend, system: str, cold: bool) -> tuple[float, int, int]:
    """Five turns; (TTFT of turn 5, its cached tokens, its prompt tokens estimate)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}]
    for question in QUESTIONS[:4]:
        messages.append({"role": "user", "content": question})
        _, answer, _ = await turn_ttft(backend, messages)
        messages.append({"role": "assistant", "content": answer or "I see."})
    if cold:  # another user's request takes the instance's cache
        await turn_ttft(backend, [{"role": "user", "content": "Name a colour."}])
    messages.append({"role": "user", "content": QUESTIONS[4]})
    ttft, _, cached = await turn_ttft(backend, messages)
    return ttft, cached, sum(len(str(m["content"]).split()) for m in messages)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default="smollm2")
    parser.add_argument("--context", type=int, default=900, help="words of essay in the system prompt")
    args = parser.parse_args()
    backend = LocalBackend(Deployment(name=f"local/{args.model}", provider="local", model=args.model))
    await backend.start()
    system = "Answer questions about this essay briefly.\n\n" + excerpt(args.context)
    results: dict[bool, list[tuple[float, int]]] = {False: [], True: []}
    try:
        await conversation(backend, system, cold=False)  # warm-up: load pages, JIT nothing
        for i in range(args.rounds):
            for cold in (i % 2 == 0, i % 2 == 1):
                ttft, cached, _ = await conversation(backend, system, cold)
                results[cold].append((ttft, cached))
    finally:
        await backend.aclose()
    warm = statistics.median(t for t, _ in results[False])
    cold = statistics.median(t for t, _ in results[True])
    print(
        f"benchmarks/compress_ttft.py --rounds {args.rounds} --model {args.model} --context {args.context}, "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}\n"
    )
    print("| turn 5 | TTFT median | TTFT each round | cached tokens reported |")
    print("|---|---|---|---|")
    for name, key in (("prefix reused", False), ("cold (another request in between)", True)):
        each = ", ".join(f"{t * 1000:.0f}" for t, _ in results[key])
        cached = sorted({c for _, c in results[key]})
        print(
            f"| {name} | {statistics.median(t for t, _ in results[key]) * 1000:.0f} ms | {each} | {cached} |"
        )
    print(f"\nratio cold / reused: {cold / warm:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
