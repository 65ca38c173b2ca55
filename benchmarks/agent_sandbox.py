"""What the tool sandbox costs and what it stops: worker boot, a call's round trip, a timeout.

    .venv/bin/python benchmarks/agent_sandbox.py     # ~30 s, updates its block in docs/bench/agent.md

- boot: the first call on a fresh sandbox (a new interpreter imports the tool).
- round trip: ``calc("2**100 % 7")`` on a warm worker, against calling the
  function directly (how ``calc`` ran before: on the event loop) and in a thread.
- a pure-Python loop of 60 s under a 0.5 s timeout: when the executor gets the
  timeout, and when the next call on the same (one-worker) sandbox returns.
- the three expressions from issue 11, through the executor with the default tools.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def spin(seconds: float = 60.0) -> int:
    """Busy in pure Python for ``seconds``: nothing for a timeout to interrupt but a kill."""
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += 1
    return n


def med_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


async def measure() -> list[str]:
    from thrifty.agent import Executor, PlanBuilder, Sandbox, ToolSpec, default_registry, parse_text
    from thrifty.agent.builtin.calc import calculate

    target = "thrifty.agent.builtin.calc:calculate"
    args = {"expression": "2**100 % 7"}
    boots = []
    for _ in range(5):
        box = Sandbox(workers=1)
        t = time.perf_counter()
        await box.call(target, args)
        boots.append(time.perf_counter() - t)
        await box.aclose()
    box = Sandbox(workers=1)
    await box.call(target, args)
    trips, direct, thread = [], [], []
    for _ in range(300):
        t = time.perf_counter()
        await box.call(target, args)
        trips.append(time.perf_counter() - t)
        t = time.perf_counter()
        calculate(**args)
        direct.append(time.perf_counter() - t)
        t = time.perf_counter()
        await asyncio.to_thread(calculate, **args)
        thread.append(time.perf_counter() - t)

    params = {"type": "object", "properties": {"seconds": {"type": "number"}}}
    reg = default_registry()
    reg.register(
        ToolSpec(
            "spin", "spin", params, f"{Path(__file__).stem}:spin", kind="process", timeout_s=0.5, retries=0
        )
    )
    ex = Executor(reg, sandbox=box)
    t = time.perf_counter()
    runs = await ex.run(parse_text("1. spin(60)\n", PlanBuilder(reg)))
    timed_out = time.perf_counter() - t
    t = time.perf_counter()
    again = await Executor(reg, sandbox=box).run(parse_text('1. calc("6 * 7")\n', PlanBuilder(reg)))
    next_call = time.perf_counter() - t
    assert type(runs[1].error).__name__ == "TaskTimeout" and again[1].result == 42
    await box.aclose()

    expressions = ("(10**10000)**10000", "round(1,-10**9)", "[1]*10**4*10**4")
    reg = default_registry()
    ex = Executor(reg)
    plan = "".join(f'{i}. calc("{e}")\n' for i, e in enumerate(expressions, 1))
    runs = await ex.run(parse_text(plan, PlanBuilder(reg)))
    await ex.aclose()

    lines = [
        f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}",
        f"machine: {platform.system()} {platform.release()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average at start {os.getloadavg()[0]:.1f} (shared machine)",
        f"command: {os.path.relpath(sys.executable, ROOT)} {os.path.relpath(sys.argv[0], ROOT)}",
        "",
        f"- worker boot (first call on a fresh sandbox, imports calc): median {statistics.median(boots) * 1000:.0f} ms "
        f"of 5; `Executor` starts one as soon as a process tool is planned, so the planner's time hides it",
        f"- `calc` round trip on a warm worker: median {med_us(trips):.0f} µs (direct call on the loop, as before: "
        f"{med_us(direct):.0f} µs; `asyncio.to_thread`: {med_us(thread):.0f} µs), 300 calls",
        f"- a 60 s pure-Python loop under a 0.5 s timeout: TaskTimeout after {timed_out:.2f} s; the next call on the "
        f"same one-worker sandbox (a fresh worker boots) returned {next_call:.2f} s later",
    ]
    for i, expression in enumerate(expressions, 1):
        run = runs[i]
        lines.append(
            f'- `calc("{expression}")`: {run.state.value} after {run.duration * 1000:.0f} ms (a worker boot included): {run.error}'
        )
    return lines


def write(doc: Path, lines: list[str]) -> None:
    start, end = "<!-- sandbox:start -->", "<!-- sandbox:end -->"
    text = doc.read_text()
    if start not in text:
        text += f"\n{start}\n{end}\n"
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    doc.write_text(f"{head}{start}\n" + "\n".join(lines) + f"\n{end}{tail}")


if __name__ == "__main__":
    out = asyncio.run(measure())
    print("\n".join(out))
    if "--quick" not in sys.argv:
        write(ROOT / "docs" / "bench" / "agent.md", out)
