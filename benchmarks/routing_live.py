"""Live cascade check through a running thrifty gateway.

Sends a small task set with an automatic checker (arithmetic, yes/no facts) to
each single tier and to the cascade router, and reports accuracy, escalations
(from the ``x-thrifty-route`` header), tokens, latency and cost side by side.
It never asserts that the small models answer correctly: it measures.

    .venv/bin/python benchmarks/routing_live.py --url http://127.0.0.1:8000 \
        --router thrifty/cascade --tier fast=smollm2 --tier next=gemma \
        [--price fast=0,0 --price next=0,0] [--limit 40] [--ledger .thrifty/ledger.db] [--rate]

Standard library only; requests go to the given URL, one at a time, and the
loop ends after ``--limit`` tasks per target. With ``--ledger`` (the gateway's
ledger file) the calls a request made besides its answer (a cascade's verifier
samples, peer answers, escalated answers: rows whose ``parent_id`` is the
request) are counted too, priced with ``--price`` by the tier of the group that
made them. With ``--rate`` every answer is rated through ``POST /v1/feedback``
by the checker (5 correct, 1 wrong): history for ``thrifty route fit --ledger``.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import re
import sqlite3
import statistics
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime

FACTS = [
    ("Is Paris the capital of France?", "yes"),
    ("Is the Pacific the largest ocean on Earth?", "yes"),
    ("Is water made of hydrogen and oxygen?", "yes"),
    ("Does the Sun rise in the east?", "yes"),
    ("Is a spider an insect?", "no"),
    ("Is 7 an even number?", "no"),
    ("Is Mount Everest the tallest mountain above sea level?", "yes"),
    ("Do penguins live at the North Pole?", "no"),
    ("Is the Moon larger than the Earth?", "no"),
    ("Is English written from right to left?", "no"),
    ("Is ice colder than boiling water?", "yes"),
    ("Does a week have eight days?", "no"),
    ("Is Tokyo in Japan?", "yes"),
    ("Is the whale a fish?", "no"),
    ("Do plants need sunlight to photosynthesise?", "yes"),
    ("Is Berlin the capital of Italy?", "no"),
    ("Is a triangle a shape with three sides?", "yes"),
    ("Is gold a gas at room temperature?", "no"),
    ("Is the Amazon a river in South America?", "yes"),
    ("Are there 100 centimetres in a metre?", "yes"),
]


@dataclass
class Task:
    prompt: str
    answer: str
    kind: str

    def correct(self, text: str) -> bool:
        if self.kind == "arith":
            found = re.search(r"-?\d+", text.replace(",", ""))
            return found is not None and found.group(0) == self.answer
        found = re.search(r"\b(yes|no)\b", text.lower())
        return found is not None and found.group(1) == self.answer


def tasks(limit: int, seed: int = 7) -> list[Task]:
    rng = random.Random(seed)
    out: list[Task] = []
    for i in range(limit):
        if i % 2 == 0:
            a, b = rng.randint(2, 60), rng.randint(2, 60)
            op = rng.choice(["+", "-", "*"])
            value = a + b if op == "+" else a - b if op == "-" else a * b
            out.append(Task(f"What is {a} {op} {b}? Reply with the number only.", str(value), "arith"))
        else:
            q, ans = FACTS[(i // 2) % len(FACTS)]
            out.append(Task(f"{q} Reply with yes or no only.", ans, "fact"))
    return out


@dataclass
class Tally:
    correct: int = 0
    total: int = 0
    escalations: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    latencies: list[float] = field(default_factory=list)
    final_tiers: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    ids: list[str] = field(default_factory=list)  # the response ids, to find their extra calls
    extra_calls: int = 0
    extra_in: int = 0
    extra_out: int = 0
    extra_cost: float = 0.0

    def add_extra_calls(
        self, ledger: str, groups: dict[str, str], prices: dict[str, tuple[float, ...]]
    ) -> None:
        """The calls besides the answers, from the ledger: priced by the tier of the group called."""
        db = sqlite3.connect(f"file:{ledger}?mode=ro", uri=True)
        try:
            marks = ",".join("?" * len(self.ids))
            rows = db.execute(
                f"SELECT deployment, prompt_tokens, completion_tokens FROM requests WHERE parent_id IN ({marks})",
                self.ids,
            ).fetchall()
        finally:
            db.close()
        for deployment, pin, pout in rows:
            tier = groups.get(str(deployment).split("/", 1)[0], "")
            price = prices.get(tier, (0.0, 0.0))
            self.extra_calls += 1
            self.extra_in += int(pin or 0)
            self.extra_out += int(pout or 0)
            self.extra_cost += (int(pin or 0) * price[0] + int(pout or 0) * price[1]) / 1e6


def call(url: str, model: str, prompt: str, timeout: float) -> tuple[dict[str, object], dict[str, str]]:
    body = json.dumps(
        {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 16,
            "temperature": 0,
        }
    ).encode()
    req = urllib.request.Request(
        url.rstrip("/") + "/v1/chat/completions", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read()), {k.lower(): v for k, v in resp.headers.items()}


def run_target(
    args: argparse.Namespace,
    model: str,
    prices: dict[str, tuple[float, ...]],
    default: str,
    items: list[Task],
) -> Tally:
    """Send every task to ``model``; cost uses the price of the tier that answered (from the header)."""
    tally = Tally()
    for task in items:
        start = time.perf_counter()
        try:
            data, headers = call(args.url, model, task.prompt, args.timeout)
        except Exception as exc:  # report, do not stop: a live check measures
            tally.errors += 1
            print(f"  {model}: error {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        tally.latencies.append(time.perf_counter() - start)
        choices = data.get("choices") or [{}]
        text = str(((choices[0] or {}).get("message") or {}).get("content") or "")  # type: ignore[union-attr]
        usage = data.get("usage") or {}
        pin, pout = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))  # type: ignore[union-attr]
        route = headers.get("x-thrifty-route", "")
        esc = re.search(r"escalations=(\d+)", route)
        tier = re.search(r"model=(\S+)", route)
        tally.escalations += int(esc.group(1)) if esc else 0
        final = tier.group(1) if tier else model
        tally.final_tiers[final] = tally.final_tiers.get(final, 0) + 1
        tally.tokens_in += pin
        tally.tokens_out += pout
        price = prices.get(final, prices.get(default, (0.0, 0.0)))
        tally.cost += (pin * price[0] + pout * price[1]) / 1e6
        tally.total += 1
        right = task.correct(text)
        tally.correct += right
        tally.ids.append(str(data.get("id") or ""))
        if args.rate:
            rate(args.url, tally.ids[-1], 5 if right else 1, args.timeout)
    return tally


def rate(url: str, response_id: str, rating: int, timeout: float) -> None:
    body = json.dumps({"response_id": response_id, "rating": rating}).encode()
    req = urllib.request.Request(
        url.rstrip("/") + "/v1/feedback", data=body, headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        resp.read()


def parse_pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        if "=" not in value:
            raise SystemExit(f"--{what} wants name=value, got {value!r}")
        k, v = value.split("=", 1)
        out[k] = v
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True, help="gateway base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--router", default="thrifty/cascade", help="the routed model name to test")
    p.add_argument("--tier", action="append", default=[], help="tier=model-group, cheapest first (baselines)")
    p.add_argument("--price", action="append", default=[], help="tier=input,output USD per 1M tokens")
    p.add_argument("--limit", type=int, default=40, help="tasks per target (bounded)")
    p.add_argument("--timeout", type=float, default=120.0)
    p.add_argument("--ledger", help="the gateway's ledger file: count the calls made besides the answers")
    p.add_argument("--rate", action="store_true", help="rate every answer by the checker (POST /v1/feedback)")
    args = p.parse_args()
    tiers = parse_pairs(args.tier, "tier")
    prices = {k: tuple(float(x) for x in v.split(",")) for k, v in parse_pairs(args.price, "price").items()}
    items = tasks(args.limit)
    print(
        f"# routing live check\nmachine: {platform.machine()} {platform.processor() or ''} "
        f"python {platform.python_version()}\ndate: {datetime.now(UTC).isoformat(timespec='seconds')}\n"
        f"command: {' '.join(sys.argv)}\ntasks: {len(items)} (arithmetic + yes/no facts)\n"
    )
    rows = []
    for tier, group in tiers.items():
        rows.append((f"{tier} only ({group})", run_target(args, group, prices, tier, items)))
    # the router's answering call is priced by the tier in x-thrifty-route; the tokens of escalated
    # (discarded) calls are not in the response usage: the gateway ledger has them
    rows.append((args.router, run_target(args, args.router, prices, "", items)))
    if args.ledger:
        time.sleep(1.0)  # the gateway writes its ledger in batches (50 ms by default)
        groups = {group: tier for tier, group in tiers.items()}
        for _, t in rows:
            t.add_extra_calls(args.ledger, groups, prices)
    print(
        "| target | accuracy | escalations | answered by | tokens in/out (answers) | extra calls "
        "(tokens in/out) | cost USD (answers) | cost USD (all calls) | median latency s | errors |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for name, t in rows:
        acc = t.correct / t.total if t.total else 0.0
        lat = statistics.median(t.latencies) if t.latencies else 0.0
        extra = f"{t.extra_calls} ({t.extra_in}/{t.extra_out})" if args.ledger else "not read"
        total = f"{t.cost + t.extra_cost:.6f}" if args.ledger else "–"
        print(
            f"| {name} | {acc:.2f} ({t.correct}/{t.total}) | {t.escalations} | "
            f"{', '.join(f'{k}:{v}' for k, v in t.final_tiers.items())} | {t.tokens_in}/{t.tokens_out} | "
            f"{extra} | {t.cost:.6f} | {total} | {lat:.2f} | {t.errors} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
