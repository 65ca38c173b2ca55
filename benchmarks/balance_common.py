"""Shared parts of the balance benchmarks: fake upstream processes, a group over them, a load loop.

Not a benchmark itself. Upstreams are `python -m thrifty.fakeupstream` child processes on
127.0.0.1 (so their event loops do not share a core with the client's); the client is a
thrifty balanced group over real OpenAI-provider backends, driven by a closed loop of workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from thrifty import providers
from thrifty.backend import Backend
from thrifty.balance import build_group
from thrifty.config import parse_config
from thrifty.errors import ThriftyError
from thrifty.types import ChatRequest


def header(title: str) -> str:
    """Machine, date and command, printed at the top of every run."""
    cpu = platform.processor() or platform.machine()
    lines = [
        f"# {title}",
        f"date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}",
        f"machine: {platform.system()} {platform.release()}, {os.cpu_count()} cores ({cpu}), "
        f"Python {platform.python_version()}; load average at start {os.getloadavg()[0]:.1f} "
        "(the machine is shared)",
        f"command: {' '.join([os.path.relpath(sys.executable), *sys.argv])}",
    ]
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Upstream:
    name: str
    port: int
    process: subprocess.Popen[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


@contextlib.contextmanager
def upstreams(count: int, *args: str) -> Iterator[list[Upstream]]:
    """``count`` fake upstream processes with the same CLI ``args``; stopped on exit."""
    started: list[Upstream] = []
    try:
        for i in range(count):
            port = free_port()
            cmd = [
                sys.executable,
                "-m",
                "thrifty.fakeupstream",
                "--port",
                str(port),
                "--name",
                f"r{i}",
                "--seed",
                str(i + 1),
                *args,
            ]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None
            proc.stdout.readline()  # "listening on ..."
            started.append(Upstream(f"r{i}", port, proc))
        yield started
    finally:
        for up in started:
            up.process.terminate()
        for up in started:
            up.process.wait(timeout=10)


async def control(up: Upstream, **changes: Any) -> dict[str, Any]:
    """Change an upstream's behaviour (and read its stats) through POST /_control."""
    import aiohttp

    async with (
        aiohttp.ClientSession() as s,
        s.post(f"http://127.0.0.1:{up.port}/_control", json=changes) as resp,
    ):
        data: dict[str, Any] = await resp.json()
        return data


def group_over(urls: Sequence[tuple[str, str]], **options: Any) -> Backend:
    """A balanced group named 'g' over (name, base url) deployments, from config like a user's."""
    deps = [{"model": "openai_compatible/fake", "api_base": url, "name": name} for name, url in urls]
    balance = options.pop("balance", None)
    data: dict[str, Any] = {"models": [{"name": "g", "deployments": deps, **options}]}
    if balance:
        data["balance"] = balance
    config = parse_config(data, source="bench")
    group = config.models[0]
    return build_group(group, [providers.build(d) for d in group.deployments], config)


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)  # successful requests, seconds
    errors: dict[str, int] = field(default_factory=dict)
    timeline: list[tuple[float, float, bool]] = field(default_factory=list)  # (start, latency, ok)

    @property
    def total(self) -> int:
        return len(self.latencies) + sum(self.errors.values())

    @property
    def success_rate(self) -> float:
        return len(self.latencies) / self.total if self.total else 0.0

    def pct(self, q: float) -> float:
        """Latency percentile in milliseconds over successful requests."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    @property
    def median(self) -> float:
        return 1000 * statistics.median(self.latencies) if self.latencies else float("nan")


def request(i: int) -> ChatRequest:
    return ChatRequest(
        model="g", messages=[{"role": "user", "content": f"question {i}"}], params={"max_tokens": 8}
    )


async def load(
    backend: Backend,
    *,
    requests: int | None = None,
    seconds: float | None = None,
    concurrency: int = 8,
    stream: bool = False,
) -> Result:
    """A closed loop: ``concurrency`` workers send back to back until a count or a time is reached."""
    result = Result()
    counter = iter(range(10**9))
    t0 = time.perf_counter()

    def more() -> int | None:
        i = next(counter)
        if requests is not None and i >= requests:
            return None
        if seconds is not None and time.perf_counter() - t0 >= seconds:
            return None
        return i

    async def one(i: int) -> None:
        req = request(i)
        start = time.perf_counter()
        try:
            if stream:
                req.stream = True
                async for _ in backend.stream(req):
                    pass
            else:
                await backend.complete(req)
        except ThriftyError as exc:
            name = type(exc).__name__
            result.errors[name] = result.errors.get(name, 0) + 1
            result.timeline.append((start - t0, time.perf_counter() - start, False))
            return
        latency = time.perf_counter() - start
        result.latencies.append(latency)
        result.timeline.append((start - t0, latency, True))

    async def worker() -> None:
        while (i := more()) is not None:
            await one(i)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return result


def row(label: str, r: Result, base: Result | None = None) -> str:
    ratio = f"{r.pct(99) / base.pct(99):.2f}x" if base is not None and base.latencies else "-"
    errors = ", ".join(f"{k} {v}" for k, v in sorted(r.errors.items())) or "-"
    return (
        f"| {label} | {r.total} | {100 * r.success_rate:.2f}% | {r.median:.1f} | {r.pct(99):.1f} | "
        f"{ratio} | {errors} |"
    )


TABLE_HEAD = (
    "| scenario | requests | success | p50 ms | p99 ms | p99 vs baseline | client-seen errors |\n"
    "|---|---:|---:|---:|---:|---:|---|"
)


@dataclass
class Pooled:
    """One scenario over several reps: latencies pooled, and each rep's p99 kept."""

    all: Result = field(default_factory=Result)
    p99s: list[float] = field(default_factory=list)

    def add(self, more: Result) -> None:
        self.all.latencies += more.latencies
        for name, count in more.errors.items():
            self.all.errors[name] = self.all.errors.get(name, 0) + count
        self.p99s.append(more.pct(99))

    @property
    def p99(self) -> float:
        """The median over reps of each rep's p99: one hiccup of the shared machine moves it less."""
        return statistics.median(self.p99s)


def line(label: str, r: Pooled, base: Pooled) -> str:
    errors = ", ".join(f"{k} {v}" for k, v in sorted(r.all.errors.items())) or "-"
    spread = f"{min(r.p99s):.0f}-{max(r.p99s):.0f}"
    return (
        f"| {label} | {r.all.total} | {100 * r.all.success_rate:.2f}% | {r.all.median:.1f} | "
        f"{r.p99:.1f} | {spread} | {r.p99 / base.p99:.2f}x | {errors} |"
    )


POOLED_HEAD = (
    "| scenario | requests | success | p50 ms | p99 ms | p99 range | p99 vs baseline | client-seen errors |\n"
    "|---|---:|---:|---:|---:|---|---:|---|"
)
