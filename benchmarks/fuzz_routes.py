"""Fuzz every route of a real gateway from its own /openapi.json, longer than the test suite does.

The gateway, keys and case generation are the suite's (``tests/server/fuzzing.py``): the whole
app over a scripted backend on 127.0.0.1, an admin and a client key configured, each case sent
with the admin key, the client key, a wrong key or none. Valid and invalid cases come from
schemathesis, from a fixed seed, so a run is repeatable.

Then a type-confusion sweep: each wrong kind of value (object, array, lone surrogate, deep
nesting, 2**64...) in each field of a valid body, one at a time, plus a 5,000-deep body.

For each, prints the cases by status and by route, then every 5xx grouped by its cause (the
exception the server logged, where it was raised) with the shortest request that caused it, and
every 4xx that is not OpenAI's error JSON with a message, and every answer the document does not allow
(status, content type, x-thrifty-* and x-ratelimit-* headers, body). Exits 1 if there was any.

Run: PYTHONPATH=src .venv/bin/python benchmarks/fuzz_routes.py [--cases 10000] [--seed 1]
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import os
import platform
import re
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.server.fuzzing import (
    Live,
    Outcome,
    call,
    check_answer,
    fuzz,
    live_gateway,
    operations,
    slots,
    type_confusion,
)


class Captured(logging.Handler):
    """The exceptions the gateway logs; cases run one at a time, so they belong to the last case."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.pending: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{Path(frame.filename).name}:{frame.lineno} ({frame.name})"
            self.pending.append(f"{type(exc).__name__}: {str(exc)[:100]} at {where}")
        else:
            self.pending.append(record.getMessage()[:160])

    def take(self) -> list[str]:
        taken, self.pending = self.pending, []
        return taken


@dataclass
class Tally:
    by_status: Counter[int] = field(default_factory=Counter)
    by_route: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    causes: dict[str, list[Outcome]] = field(default_factory=lambda: defaultdict(list))
    unnamed: list[Outcome] = field(default_factory=list)
    off_document: list[str] = field(default_factory=list)
    doc: dict[str, Any] = field(default_factory=dict)

    def add(self, outcome: Outcome, logged: list[str]) -> None:
        if self.doc and outcome.status < 500:
            method, template = outcome.operation.split(" ", 1)
            try:
                check_answer(self.doc, template, method, (outcome.status, outcome.headers, outcome.body))
            except (AssertionError, ValueError) as exc:
                self.off_document.append(f"{str(exc)[:200]}  `{outcome.curl[:300]}`")
        self.by_status[outcome.status] += 1
        self.by_route[outcome.operation][outcome.status] += 1
        if outcome.status >= 500 and outcome.problem() is not None:
            cause = logged[0] if logged else f"{outcome.status}, nothing logged"
            self.causes[f"{outcome.status} {cause}"].append(outcome)
        elif outcome.problem() is not None:
            self.unnamed.append(outcome)


def _shortest(outcomes: list[Outcome]) -> Outcome:
    return min(outcomes, key=lambda o: (len(o.request_body), o.curl))


def _abbreviate(text: str) -> str:
    """Long runs of one character (deep nesting) as ``[×5000``."""
    return re.sub(r"([\[\]{}])\1{9,}", lambda m: f"{m.group(1)}×{len(m.group(0))}", text)


def minimize(live: Live, outcome: Outcome, cause: str, captured: Captured) -> str | None:
    """Greedily drop fields and array items of a failing JSON body while it fails the same way."""
    try:
        body = json.loads(outcome.request_body)
    except (ValueError, RecursionError):
        return None
    method, template = outcome.operation.split(" ", 1)
    url, path = live.url, template.format(**live.known)  # path parameters: the ids the server knows

    def still_fails(candidate: Any) -> bool:
        status, _, _ = call(url, method, path, raw=json.dumps(candidate).encode())
        logged = captured.take()
        return status == outcome.status and bool(logged) and cause.endswith(logged[0])

    changed = True
    while changed:
        changed = False
        for slot in list(slots(body)):
            candidate = json.loads(json.dumps(body))
            parent = candidate
            for key in slot[:-1]:
                parent = parent[key]
            del parent[slot[-1]]
            if still_fails(candidate):
                body, changed = candidate, True
                break
    return json.dumps(body)


def report(tally: Tally, seconds: float, minimal: dict[str, str | None]) -> str:
    total = sum(tally.by_status.values())
    statuses = sorted(tally.by_status)
    lines = [
        f"{total} cases in {seconds:.0f} s ({total / seconds:.0f} cases/s)",
        "",
        "| status | cases |",
        "|---|---|",
    ]
    lines += [f"| {s} | {tally.by_status[s]} |" for s in statuses]
    lines += [
        "",
        "| route | cases | " + " | ".join(map(str, statuses)) + " |",
        "|---|---|" + "---|" * len(statuses),
    ]
    for route in sorted(tally.by_route):
        counts = tally.by_route[route]
        cells = " | ".join(str(counts.get(s, "")) for s in statuses)
        lines.append(f"| `{route}` | {sum(counts.values())} | {cells} |")
    lines += ["", f"5xx causes: {len(tally.causes)}"]
    for cause, cases in sorted(tally.causes.items(), key=lambda kv: -len(kv[1])):
        routes = sorted({o.operation for o in cases})
        shortest = _shortest(cases)
        lines += ["", f"- {len(cases)} x {cause}", f"  routes: {', '.join(routes)}"]
        if minimal.get(cause):
            lines.append(f"  minimal body: `{shortest.operation}` `{_abbreviate(minimal[cause] or '')}`")
        else:
            lines.append(f"  shortest request: `{_abbreviate(shortest.curl)[:700]}`")
    lines += ["", f"4xx without a named OpenAI error: {len(tally.unnamed)}"]
    for outcome in tally.unnamed[:20]:
        lines.append(f"- {outcome.operation} {outcome.status}: {outcome.problem()}  `{outcome.curl[:300]}`")
    lines += ["", f"answers (below 500) off the document: {len(tally.off_document)}"]
    lines += [f"- {line}" for line in tally.off_document[:20]]
    return "\n".join(lines)


def _minimal(live: Live, tally: Tally, captured: Captured) -> dict[str, str | None]:
    return {cause: minimize(live, _shortest(cases), cause, captured) for cause, cases in tally.causes.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=10_000, help="about this many requests (default 10000)")
    parser.add_argument("--seed", type=int, default=1, help="Hypothesis seed (default 1)")
    args = parser.parse_args()

    captured = Captured()
    for name in ("thrifty", "uvicorn.error"):
        logging.getLogger(name).addHandler(captured)
    logging.getLogger("thrifty").propagate = False  # the tally reports them; keep the output readable
    logging.getLogger("python_multipart").setLevel(logging.ERROR)  # a warning per malformed upload
    print(
        f"machine: {platform.system()} {platform.release()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}; load average {os.getloadavg()[0]:.1f}; "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        flush=True,
    )
    with (
        tempfile.TemporaryDirectory(prefix="thrifty-fuzz-") as data_dir,
        live_gateway(Path(data_dir)) as live,
    ):
        from tests.server.fuzzing import load_schema

        doc = load_schema(live.url).raw_schema
        tally = Tally(doc=doc)
        modes = sum(
            2 if (op := doc["paths"][path][method.lower()]).get("requestBody") or op.get("parameters") else 1
            for method, path in operations(doc)
        )
        examples = max(1, math.ceil(args.cases / modes))
        print(
            f"{len(operations(doc))} operations, {modes} (operation, mode) pairs, {examples} examples each, "
            f"seed {args.seed}",
            flush=True,
        )
        captured.take()
        started = time.perf_counter()
        fuzz(live, examples, lambda o: tally.add(o, captured.take()), seed=args.seed)
        seconds = time.perf_counter() - started
        print("\n## schemathesis, from /openapi.json\n")
        print(report(tally, seconds, _minimal(live, tally, captured)), flush=True)
        sweep = Tally(doc=doc)
        started = time.perf_counter()
        type_confusion(live, lambda o: sweep.add(o, captured.take()))
        seconds = time.perf_counter() - started
        print("\n## type confusion: each wrong kind of value in each field of a valid body\n")
        print(report(sweep, seconds, _minimal(live, sweep, captured)))
    failed = [t for t in (tally, sweep) if t.causes or t.unnamed or t.off_document]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
