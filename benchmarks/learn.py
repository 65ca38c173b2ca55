"""The learning layer against a simulated user population with hidden preferences.

    .venv/bin/python benchmarks/learn.py [--requests 2000] [--seed 1] [--embed minilm|words]

Three groups of users, each behind its own API key (a tenant), ask questions on
their own topics in a few phrasings. A scripted backend answers; its answer
carries the features of the prompt variant it was given (stated below). Each
user rates every answer by a fixed rule from those features, with seeded noise,
and sometimes comments. The same request stream is run four ways:

    none       no learning: every request gets the baseline prompt
    learn      the learning layer: reasons, per-user overrides, A/B tests, knowledge base (hit)
    learn-nokb the same without the knowledge base
    learn-noverify  learn, reusing answers on similarity alone (no verifier)
    oracle     the best fixed variant per group in hindsight

Answer features (what the fake model does with each variant):
    baseline            dense
    simplify_examples   simple, examples
    concise             short
    detailed            long, detail
    step_by_step        steps, long
    format_hint         structured, dense
    user_language / on_topic   dense (no visible change here)

Rating rule (before noise), starting from 3:
    novices   +2 if simple and examples; +1 structured; -1 dense; -1 long
    busy      +2 if short; -1 long; -1 examples
    deep      +2 if detail; +1 steps; -1 short
then clamped to 1..5; an answer about another topic (a wrong knowledge-base
hit) is rated 1 and called "wrong" with p=0.4. Noise: +1 with p=0.1, -1 with p=0.1 (clamped again).
A rating of 1-3 comes with a comment in the group's words with p=0.4, or in
another group's words with p=0.1 (misleading: it proposes a harmful variant);
a rating of 4-5 says "great, thanks" with p=0.3. After a rating of 1-2 a user
rephrases the same question at once with p=0.25 (an implicit signal; it takes
the next request's place). Requests are 10 simulated seconds apart, so a
user's next ordinary question falls outside the 300 s window.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import platform
import random
import re
import statistics
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from thrifty.learn.layer import LearningLayer  # noqa: E402
from thrifty.learn.operators import BASELINE, OPERATORS  # noqa: E402
from thrifty.learn.settings import LearnSettings  # noqa: E402
from thrifty.observe.feedback import Signal  # noqa: E402
from thrifty.testing import FakeBackend  # noqa: E402
from thrifty.types import ChatRequest, message_text  # noqa: E402

FEATURES = {
    BASELINE: {"dense"},
    "simplify_examples": {"simple", "examples"},
    "concise": {"short"},
    "detailed": {"long", "detail"},
    "step_by_step": {"steps", "long"},
    "format_hint": {"structured", "dense"},
    "user_language": {"dense"},
    "on_topic": {"dense"},
}
GROUPS: dict[str, dict[str, Any]] = {
    "novices": {
        "topics": [
            "microservices",
            "Kubernetes pods",
            "OAuth tokens",
            "database indexes",
            "HTTP status 404",
            "HTTP status 403",
        ],
        "complaints": [
            "too complex, I need concrete examples",
            "way too technical",
            "can you give an example?",
        ],
    },
    "busy": {
        "topics": [
            "git rebase",
            "HTTP caching headers",
            "Python virtualenvs",
            "cron syntax",
            "Python 3.11 features",
            "Python 3.12 features",
        ],
        "complaints": ["too long", "get to the point please", "tl;dr"],
    },
    "deep": {
        "topics": [
            "consensus in Raft",
            "B-tree splits",
            "TCP congestion control",
            "garbage collection",
            "IPv4 addressing",
            "IPv6 addressing",
        ],
        "complaints": ["needs more detail", "too shallow", "please elaborate"],
    },
}
PHRASINGS = ["Explain {}", "What is {}?", "How does {} work?"]
USERS_PER_GROUP = 40
STEP_S = 10.0  # simulated seconds between requests: a user's next question is ~20 minutes later


class SimClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def rule(group: str, features: set[str]) -> int:
    """The rating before noise (see the module docstring)."""
    if "wrong_topic" in features:
        return 1
    score = 3
    if group == "novices":
        score += 2 * ({"simple", "examples"} <= features) + ("structured" in features)
        score -= ("dense" in features) + ("long" in features)
    elif group == "busy":
        score += 2 * ("short" in features) - ("long" in features) - ("examples" in features)
    else:
        score += 2 * ("detail" in features) + ("steps" in features) - ("short" in features)
    return max(1, min(5, score))


def expected(group: str, features: set[str]) -> float:
    """The mean rating under the noise."""
    base = rule(group, features)
    return 0.8 * base + 0.1 * min(5, base + 1) + 0.1 * max(1, base - 1)


def features_of(request: ChatRequest) -> set[str]:
    """What the fake model's answer shows, from the prompt it was given."""
    text = " ".join(message_text(m) for m in request.messages)
    for name in ("simplify_examples", "concise", "detailed", "step_by_step", "format_hint"):
        op = OPERATORS[name]
        if (op.suffix and op.suffix in text) or (op.system and op.system in text):
            return set(FEATURES[name])
    return set(FEATURES[BASELINE])


ANSWER = re.compile(
    r"^\[topic=(?P<topic>[^\]]*)\] \[owner=(?P<owner>[^\]]*)\] \[features=(?P<features>[^\]]*)\]"
)


def fake_model(topic_of: dict[str, str]) -> Callable[[ChatRequest], str]:
    def answer(request: ChatRequest) -> str:
        question = next(m for m in reversed(request.messages) if m.get("role") == "user")
        original = message_text(question).replace(" simply with practical examples", "")
        topic = topic_of.get(original, "?")
        return (
            f"[topic={topic}] [owner={request.trace.key_id}] "
            f"[features={','.join(sorted(features_of(request)))}] An answer about {topic}."
        )

    return answer


@dataclass
class Ask:
    group: str
    owner: str
    user: str
    topic: str
    text: str


def population(requests: int, seed: int) -> list[tuple[str, str, str]]:
    """(group, user, topic) per step, fixed by the seed; the phrasing is chosen while running."""
    rng = random.Random(seed)
    out = []
    for _ in range(requests):
        group = rng.choice(list(GROUPS))
        user = f"{group}-{rng.randrange(USERS_PER_GROUP)}"
        out.append((group, user, rng.choice(GROUPS[group]["topics"])))
    return out


@dataclass
class Result:
    name: str
    ratings: list[int] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    expected: list[float] = field(default_factory=list)
    regret: list[float] = field(default_factory=list)
    hits: int = 0
    hit_errors: int = 0
    leaks: int = 0
    promotions: list[dict[str, Any]] = field(default_factory=list)
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    implicit: int = 0
    overhead_ms: list[float] = field(default_factory=list)


def react(rng: random.Random, group: str, feats: set[str]) -> tuple[int, str | None, bool]:
    """A user's rating, comment, and whether they rephrase the question next (see the docstring)."""
    noise = rng.random()
    rating = max(1, min(5, rule(group, feats) + (1 if noise < 0.1 else -1 if noise < 0.2 else 0)))
    comment = None
    if rating <= 3:
        roll = rng.random()
        if roll < 0.4:
            comment = "this is wrong" if "wrong_topic" in feats else rng.choice(GROUPS[group]["complaints"])
        elif roll < 0.5:
            other = rng.choice([g for g in GROUPS if g != group])
            comment = rng.choice(GROUPS[other]["complaints"])
        return rating, comment, rating <= 2 and rng.random() < 0.25
    if rng.random() < 0.3:
        comment = "great, thanks"
    return rating, comment, False


class Decisions:
    """Reads each context's experiment history as ratings arrive: when candidates start and end."""

    def __init__(self) -> None:
        self.ratings: Counter[tuple[str, str]] = Counter()
        self.seen: dict[tuple[str, str], int] = {}  # history events already read, per context
        self.started_at: dict[
            tuple[str, str], int
        ] = {}  # the context's rating count when its candidate started

    def note(self, layer: LearningLayer, owner: str, context: str, result: Result) -> None:
        key = (owner, context)
        self.ratings[key] += 1
        exp = layer.experiments.get(key)
        if exp is None:
            return
        for event in exp.history[self.seen.get(key, 0) :]:
            if event["event"] == "started":
                self.started_at[key] = self.ratings[key]
                continue
            record = {
                "owner": owner,
                "context": context,
                **event,
                "ratings_to_decide": self.ratings[key] - self.started_at.get(key, 0),
            }
            (result.promotions if event["event"] == "promoted" else result.rollbacks).append(record)
        self.seen[key] = len(exp.history)


async def run(
    name: str,
    steps: list[tuple[str, str, str]],
    embed: Callable[[Sequence[str]], Any],
    seed: int,
    path: str,
    *,
    learn: bool,
    knowledge: bool,
    fixed: dict[str, str] | None = None,
    verify: bool = True,
    redis_url: str = "",
) -> Result:
    rng = random.Random(seed + 1)
    topic_of = {p.format(t): t for g in GROUPS.values() for t in g["topics"] for p in PHRASINGS}
    backend = FakeBackend(fake_model(topic_of))
    settings = LearnSettings(
        enabled=True,
        path=path,
        knowledge="hit" if knowledge else "off",
        min_samples=8,
        confidence=0.95,
        max_share=0.5,
        refresh_s=3600.0,
        seed=seed,
        knowledge_verify=verify,
        redis_url=redis_url,
    )
    clock = SimClock()
    layers = await replicas(backend, settings, embed, clock)
    layer = layers[0]
    result = Result(name)
    best = {g: max(expected(g, FEATURES[v]) for v in FEATURES) for g in GROUPS}
    decisions = Decisions()
    retry: tuple[str, str, str, str] | None = None  # (group, user, topic, phrasing) to rephrase next
    try:
        for step in steps:
            clock.now += STEP_S
            if retry is not None:  # the unhappy user asks again at once, in other words
                group, user, topic, said = retry
                text = rng.choice([p for p in PHRASINGS if p != said]).format(topic)
                retry = None
            else:
                group, user, topic = step
                said = rng.choice(PHRASINGS)
                text = said.format(topic)
            owner = f"tenant-{group}"
            request = ChatRequest(model="m", messages=[{"role": "user", "content": text}])
            request.trace.key_id, request.trace.user = owner, user
            if fixed is not None:
                op = OPERATORS.get(fixed[group])
                if op is not None:
                    request.messages = op.apply(request.messages)
            if not learn:
                request.options["learn"] = False
            serving = layers[len(result.ratings) % len(layers)]
            rating_on = layers[(len(result.ratings) + 1) % len(layers)]
            started = time.perf_counter()
            reply = await serving.complete(request)
            result.overhead_ms.append((time.perf_counter() - started) * 1000)
            parsed = ANSWER.match(reply.text)
            assert parsed is not None, reply.text
            feats = set(filter(None, parsed["features"].split(",")))
            if parsed["topic"] != topic:
                feats.add("wrong_topic")  # an answer to another question: the user rates it 1
            variant = request.trace.variant
            if variant is not None and variant.knowledge == "hit":
                result.hits += 1
                result.hit_errors += parsed["topic"] != topic
                result.leaks += parsed["owner"] != owner
            rating, comment, again = react(rng, group, feats)
            if again:
                retry = (group, user, topic, said)
            result.ratings.append(rating)
            result.groups.append(group)
            result.expected.append(expected(group, feats))
            result.regret.append(best[group] - expected(group, feats))
            if learn:
                signal = Signal(request.trace.request_id, rating, owner=owner, comment=comment)
                await rate(layers, serving, rating_on, signal)
                if variant is not None and variant.context:
                    decisions.note(layer, owner, variant.context, result)
        result.implicit = sum(one.counts["implicit"] for one in layers)
    finally:
        for one in layers:
            await one.aclose()
    return result


async def replicas(
    backend: FakeBackend, settings: LearnSettings, embed: Callable[[Sequence[str]], Any], clock: SimClock
) -> list[LearningLayer]:
    """One layer, or with ``redis_url`` two replicas on that (flushed) Redis, started."""
    if settings.redis_url:
        import redis.asyncio as aioredis

        async with aioredis.Redis.from_url(settings.redis_url) as client:
            await client.flushdb()
        other = dataclasses.replace(settings, path=settings.path + ".b")
        layers = [LearningLayer(backend, "m", s, embed, clock=clock) for s in (settings, other)]
    else:
        layers = [LearningLayer(backend, "m", settings, embed, clock=clock)]
    for one in layers:
        await one.start()
    return layers


async def rate(
    layers: list[LearningLayer], serving: LearningLayer, rating_on: LearningLayer, signal: Signal
) -> None:
    """The rating through ``rating_on``; with replicas, all of them read the stream after it.

    Steps are 10 simulated seconds apart, longer than ``refresh_s``: every replica has
    read the others' events before the next request.
    """
    if len(layers) > 1:
        await serving.journal.flush()
    await rating_on.on_signal(signal)
    if len(layers) > 1:
        for one in layers:
            await one.refresh()


def words(texts: Sequence[str]) -> Any:
    import numpy as np

    out = np.zeros((len(texts), 384), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in text.lower().replace("?", " ").split():
            out[row, zlib.crc32(word.encode()) % 384] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def best_fixed(group: str) -> str:
    """The variant whose answers the group rates highest, in hindsight."""
    return max(FEATURES, key=lambda variant: expected(group, FEATURES[variant]))


def reason_accuracy(embed: Callable[[Sequence[str]], Any] | None) -> None:
    """The comment classifier on the labelled set in tests/learn/reasons.jsonl (exact set of reasons)."""
    import json

    from thrifty.learn.reasons import ReasonClassifier

    rows = [
        json.loads(line) for line in (ROOT / "tests" / "learn" / "reasons.jsonl").read_text().splitlines()
    ]
    for name, classifier in (
        ("keywords", ReasonClassifier()),
        ("keywords + MiniLM", ReasonClassifier(embed)),
    ):
        if name != "keywords" and embed is None:
            continue
        right = sum(set(classifier.classify(r["comment"])) == set(r["reasons"]) for r in rows)
        print(
            f"reason classifier ({name}): {right}/{len(rows)} comments exactly right ({right / len(rows):.1%})"
        )


def window_means(values: list[float], size: int) -> list[float]:
    return [statistics.fmean(values[i : i + size]) for i in range(0, len(values), size)]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--embed", choices=("minilm", "words"), default="minilm")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"))
    parser.add_argument(
        "--redis",
        default="",
        help="also run learn as two replicas on this Redis (flushed first!), served and rated alternately",
    )
    args = parser.parse_args()
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, python {platform.python_version()}")
    print(f"date: {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"command: .venv/bin/python benchmarks/learn.py {' '.join(sys.argv[1:])}".rstrip())
    if args.embed == "minilm":
        from thrifty.embeddings import EmbeddingModel

        embed: Callable[[Sequence[str]], Any] = EmbeddingModel().embed
        embed(["warm up"])
    else:
        embed = words
    reason_accuracy(embed if args.embed == "minilm" else None)
    steps = population(args.requests, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    best_variant = {g: best_fixed(g) for g in GROUPS}
    runs = []
    for name, kw in (
        ("none", {"learn": False, "knowledge": False}),
        ("oracle", {"learn": False, "knowledge": False, "fixed": best_variant}),
        ("learn-nokb", {"learn": True, "knowledge": False}),
        ("learn", {"learn": True, "knowledge": True}),
        ("learn-noverify", {"learn": True, "knowledge": True, "verify": False}),
        *(
            [("learn-2replicas", {"learn": True, "knowledge": True, "redis_url": args.redis})]
            if args.redis
            else []
        ),
    ):
        path = out / f"learn-{name}.sqlite3"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        runs.append(asyncio.run(run(name, steps, embed, args.seed, str(path), **kw)))
    report(runs, best_variant, args.requests)
    return 0


def report(runs: list[Result], best_variant: dict[str, str], requests: int) -> None:
    by = {r.name: r for r in runs}
    size = 200
    print(f"\nbest fixed variant per group (hindsight): {best_variant}")
    print(f"\nmean rating per window of {size} requests:")
    print(
        "| run | "
        + " | ".join(f"{i * size + 1}-{(i + 1) * size}" for i in range(requests // size))
        + " | all |"
    )
    print("|---|" + "---|" * (requests // size + 1))
    for r in runs:
        means = window_means([float(x) for x in r.ratings], size)
        print(
            f"| {r.name} | "
            + " | ".join(f"{m:.2f}" for m in means)
            + f" | {statistics.fmean(r.ratings):.2f} |"
        )
    last = {r.name: statistics.fmean(r.ratings[-size:]) for r in runs}
    print(
        f"\nlast {size}: learn {last['learn']:.2f}, oracle {last['oracle']:.2f} "
        f"({last['learn'] / last['oracle']:.1%} of it), none {last['none']:.2f} "
        f"({last['learn'] / last['none'] - 1:+.1%}); learn-nokb {last['learn-nokb']:.2f}"
    )
    if "learn-2replicas" in by:
        two = by["learn-2replicas"]
        print(
            f"two replicas on Redis: last {size} {last['learn-2replicas']:.2f}, all "
            f"{statistics.fmean(two.ratings):.2f} (one process: {last['learn']:.2f}, "
            f"{statistics.fmean(by['learn'].ratings):.2f}); knowledge hits {two.hits}, "
            f"{two.hit_errors} wrong-topic, {two.leaks} cross-tenant; implicit signals {two.implicit}"
        )
    half = requests // 2
    print(f"\nmean rating per group over the last {requests - half} requests:")
    print("| run | " + " | ".join(GROUPS) + " |")
    print("|---|" + "---|" * len(GROUPS))
    for r in runs:
        cells = [
            statistics.fmean(
                [x for x, g in zip(r.ratings[half:], r.groups[half:], strict=True) if g == group]
            )
            for group in GROUPS
        ]
        print(f"| {r.name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    for name in ("learn", "learn-nokb", "learn-noverify", "none"):
        r = by[name]
        cumulative = [sum(r.regret[:n]) for n in (500, 1000, 2000) if n <= len(r.regret)]
        print(
            f"cumulative expected regret ({name}) at 500/1000/2000: "
            + " / ".join(f"{c:.0f}" for c in cumulative)
        )
    for name in ("learn", "learn-nokb"):
        r = by[name]
        print(
            f"\n{name}: {len(r.promotions)} promotions, {len(r.rollbacks)} rollbacks, {r.implicit} implicit signals"
        )
        for p in r.promotions:
            print(
                f"  promoted {p['variant']} over {p['against']} in {p['owner']}/{p['context']} after "
                f"{p['ratings_to_decide']} ratings of the context (P(better) {p['p_better']})"
            )
        for p in r.rollbacks:
            print(
                f"  rolled back {p['variant']} against {p['against']} in {p['owner']}/{p['context']} after "
                f"{p['ratings_to_decide']} ratings of the context (P(better) {p['p_better']})"
            )
    for name in ("learn", "learn-noverify"):
        kb = by[name]
        print(
            f"\nknowledge base ({name}): {kb.hits} hits of {requests} requests ({kb.hits / requests:.1%}), "
            f"{kb.hit_errors} wrong-topic hits ({kb.hit_errors / max(1, kb.hits):.2%}), "
            f"{kb.leaks} cross-tenant hits"
        )
    print(
        f"layer time per request (embedding included), median: none {statistics.median(by['none'].overhead_ms):.2f} ms,"
        f" learn {statistics.median(by['learn'].overhead_ms):.2f} ms"
    )


if __name__ == "__main__":
    raise SystemExit(main())
