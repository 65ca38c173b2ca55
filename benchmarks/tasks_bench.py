"""Task manager benchmark: speedup vs workers (I/O- and CPU-bound) and the adaptive limit.

    .venv/bin/python benchmarks/tasks_bench.py [--quick] [--write docs/bench/tasks.md]

1. I/O-bound: chat calls over HTTP to thrifty's fake upstream (a separate
   process, 200 ms +/- 20 ms uniform latency) at 1..256 workers, through the
   TaskManager and, side by side, through a bare asyncio.Semaphore + gather.
2. CPU-bound: a pure-Python loop (~0.1 s) on the process pool (pool size
   min(workers, cores)), and on 2 threads as the GIL-bound baseline.
3. Adaptive limit: an upstream that answers 429 above C requests in flight;
   the AIMD limit starts at 4 and must settle within 10% of C with < 1% 429s.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thrifty.backend import Backend
from thrifty.providers.openai import remote_backend
from thrifty.tasks import AimdLimit, AimdSettings, TaskManager
from thrifty.testing import chat

ROOT = Path(__file__).resolve().parent.parent
WORKERS = (1, 2, 4, 8, 16, 64, 256)
PY = sys.executable


# -- upstreams in child processes ---------------------------------------------------


def start_process(args: list[str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    port = int(line.rsplit(":", 1)[1].split("/")[0])
    return proc, port


def fake_upstream() -> tuple[subprocess.Popen[str], int]:
    return start_process(
        [
            PY,
            "-m",
            "thrifty.fakeupstream",
            "--port",
            "0",
            "--latency",
            "uniform",
            "--latency-ms",
            "180",
            "--latency-max-ms",
            "220",
        ]
    )


def capped_upstream(cap: int) -> tuple[subprocess.Popen[str], int]:
    return start_process([PY, __file__, "--serve-capped", str(cap)])


def serve_capped(cap: int) -> None:
    """An upstream that answers 429 at once above ``cap`` requests in flight (run in a child)."""
    from aiohttp import web

    state = {"in_flight": 0, "ok": 0, "refused": 0}
    rng = random.Random(1)

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        if state["in_flight"] >= cap:
            state["refused"] += 1
            return web.json_response(
                {"error": {"message": "over capacity", "type": "rate_limit_error"}},
                status=429,
                headers={"retry-after": "0"},
            )
        state["in_flight"] += 1
        try:
            await asyncio.sleep(rng.uniform(0.18, 0.22))
        finally:
            state["in_flight"] -= 1
        state["ok"] += 1
        body = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": "capped",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        return web.json_response(body)

    async def stats(_request: web.Request) -> web.Response:
        return web.json_response(state)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handle)
        app.router.add_get("/stats", stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(f"capped upstream on http://127.0.0.1:{port}/v1", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# -- I/O-bound ---------------------------------------------------------------------


@dataclass
class Row:
    workers: int
    tasks: int
    seconds: float
    ok: int
    latencies: list[float]
    cpu_s: float = 0.0  # this process's CPU time during the run

    @property
    def cpu_us_per_task(self) -> float:
        return self.cpu_s / self.tasks * 1e6

    @property
    def throughput(self) -> float:
        return self.tasks / self.seconds

    @property
    def success(self) -> float:
        return self.ok / self.tasks

    @property
    def mean_latency_ms(self) -> float:
        return statistics.fmean(self.latencies) * 1000 if self.latencies else float("nan")


def median_row(runs: list[Row]) -> Row:
    """Repeats of one setting as one row: the median wall time, all samples pooled."""
    k = len(runs)
    seconds = statistics.median(r.seconds for r in runs)
    return Row(
        runs[0].workers,
        runs[0].tasks * k,
        seconds * k,
        sum(r.ok for r in runs),
        [x for r in runs for x in r.latencies],
        sum(r.cpu_s for r in runs),
    )


async def timed_call(backend: Backend, latencies: list[float]) -> None:
    start = time.perf_counter()
    await backend.complete(chat("hello"))
    latencies.append(time.perf_counter() - start)


async def io_manager(backend: Backend, workers: int, n: int) -> Row:
    latencies: list[float] = []
    cpu = time.process_time()
    start = time.perf_counter()
    async with TaskManager(concurrency=workers) as tm:
        tasks = [tm.submit(timed_call, backend, latencies) for _ in range(n)]
        results = await asyncio.gather(*(t.future for t in tasks), return_exceptions=True)
    seconds = time.perf_counter() - start
    ok = sum(1 for r in results if not isinstance(r, BaseException))
    return Row(workers, n, seconds, ok, latencies, time.process_time() - cpu)


async def io_semaphore(backend: Backend, workers: int, n: int) -> Row:
    latencies: list[float] = []
    sem = asyncio.Semaphore(workers)

    async def one() -> None:
        async with sem:
            await timed_call(backend, latencies)

    start = time.perf_counter()
    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    seconds = time.perf_counter() - start
    return Row(workers, n, seconds, sum(1 for r in results if not isinstance(r, BaseException)), latencies)


async def fake_call(rng: random.Random, latencies: list[float]) -> None:
    """An in-process stand-in for an LLM call: 200 ms +/- 20 ms of waiting, no HTTP."""
    start = time.perf_counter()
    await asyncio.sleep(rng.uniform(0.18, 0.22))
    latencies.append(time.perf_counter() - start)


async def io_in_process(rounds: int) -> list[Row]:
    """The manager alone (no HTTP stack): its own overhead at each worker count."""
    rng = random.Random(7)
    rows = []
    for w in WORKERS:
        n = max(32, w * rounds)
        latencies: list[float] = []
        start = time.perf_counter()
        async with TaskManager(concurrency=w) as tm:
            tasks = [tm.submit(fake_call, rng, latencies) for _ in range(n)]
            results = await asyncio.gather(*(t.future for t in tasks), return_exceptions=True)
        seconds = time.perf_counter() - start
        rows.append(
            Row(w, n, seconds, sum(1 for r in results if not isinstance(r, BaseException)), latencies)
        )
    return rows


async def overhead(n: int = 20_000, workers: int = 256) -> tuple[float, float]:
    """Microseconds per no-op task: the TaskManager, and a bare Semaphore + gather."""

    async def noop() -> None:
        await asyncio.sleep(0)

    start = time.perf_counter()
    async with TaskManager(concurrency=workers) as tm:
        tasks = [tm.submit(noop) for _ in range(n)]
        await asyncio.gather(*(t.future for t in tasks))
    managed = (time.perf_counter() - start) / n * 1e6
    sem = asyncio.Semaphore(workers)

    async def one() -> None:
        async with sem:
            await noop()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return managed, (time.perf_counter() - start) / n * 1e6


async def io_bench(rounds: int) -> tuple[list[Row], list[Row]]:
    proc, port = fake_upstream()
    backend = remote_backend(f"http://127.0.0.1:{port}")
    try:
        await backend.start()
        await io_semaphore(backend, max(WORKERS), max(WORKERS))  # open the connections once, for both sides
        managed, bare = [], []
        for w in WORKERS:
            n = max(32, w * rounds)
            reps = 1 if w == 1 else 3 if w == max(WORKERS) else 2
            m_runs, b_runs = [], []
            for rep in range(reps):  # alternate which side goes first
                first, second = (io_manager, io_semaphore) if rep % 2 == 0 else (io_semaphore, io_manager)
                a, b = await first(backend, w, n), await second(backend, w, n)
                m_runs.append(a if first is io_manager else b)
                b_runs.append(b if first is io_manager else a)
            managed.append(median_row(m_runs))
            bare.append(median_row(b_runs))
        return managed, bare
    finally:
        await backend.aclose()
        proc.terminate()
        proc.wait()


# -- CPU-bound ---------------------------------------------------------------------


def burn(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def calibrate(target_s: float = 0.1) -> int:
    n = 100_000
    start = time.perf_counter()
    burn(n)
    return int(n * target_s / (time.perf_counter() - start))


async def cpu_run(kind: str, workers: int, pool: int, n: int, size: int) -> Row:
    async with TaskManager(concurrency=workers, threads=pool, processes=pool) as tm:
        if kind == "process":
            warm = [tm.submit(time.sleep, 0.3, kind="process") for _ in range(pool)]
            await asyncio.gather(*(t.future for t in warm))
        latencies: list[float] = []
        start = time.perf_counter()
        tasks = [tm.submit(burn, size, kind=kind) for _ in range(n)]  # type: ignore[arg-type]
        for t in tasks:  # latency: from submission to result
            t.future.add_done_callback(lambda _f: latencies.append(time.perf_counter() - start))
        results = await asyncio.gather(*(t.future for t in tasks), return_exceptions=True)
        seconds = time.perf_counter() - start
    return Row(workers, n, seconds, sum(1 for r in results if not isinstance(r, BaseException)), latencies)


def bare_pool(processes: int, n: int, size: int) -> float:
    """Seconds for the same work through a plain multiprocessing.Pool: the machine's own limit."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        pool.map(time.sleep, [0.3] * processes)
        start = time.perf_counter()
        pool.map(burn, [size] * n, chunksize=1)
        return time.perf_counter() - start


@dataclass
class CpuResults:
    rows: list[Row]
    threads: Row
    pairs: list[float]  # 2-process speedup over 1 process, TaskManager, interleaved repeats
    bare_pairs: list[float]  # the same through a plain multiprocessing.Pool


async def cpu_bench(n: int, repeats: int = 3) -> CpuResults:
    size = calibrate()
    cores = os.cpu_count() or 1
    rows = [await cpu_run("process", w, min(w, cores), n, size) for w in WORKERS]
    threads = await cpu_run("thread", 2, 2, n, size)
    pairs, bare_pairs = [], []
    for _ in range(repeats):  # interleaved, so a burst of load on the shared machine hits both sides
        one, two = await cpu_run("process", 1, 1, n, size), await cpu_run("process", 2, 2, n, size)
        pairs.append(one.seconds / two.seconds)
        bare_one = await asyncio.to_thread(bare_pool, 1, n, size)
        bare_pairs.append(bare_one / await asyncio.to_thread(bare_pool, 2, n, size))
    return CpuResults(rows, threads, pairs, bare_pairs)


# -- adaptive limit ----------------------------------------------------------------


@dataclass
class Adaptive:
    cap: int
    tasks: int
    failed: int
    upstream_ok: int
    upstream_429: int
    history: list[tuple[float, int]]
    seconds: float
    first_reach_s: float | None

    def steady_mean(self) -> float:
        """Time-weighted mean limit over the second half of the run."""
        half = self.seconds / 2
        points = [(t, v) for t, v in self.history]
        total = weight = 0.0
        for (t0, v), (t1, _) in zip(points, [*points[1:], (self.seconds, 0)], strict=False):
            lo, hi = max(t0, half), max(t1, half)
            total += v * (hi - lo)
            weight += hi - lo
        return total / weight if weight else float("nan")


async def adaptive_bench(cap: int, duration_s: float) -> Adaptive:
    import aiohttp

    proc, port = capped_upstream(cap)
    backend = remote_backend(f"http://127.0.0.1:{port}")
    clock0 = time.monotonic()
    limit = AimdLimit(AimdSettings(initial=4, maximum=1024), clock=lambda: time.monotonic() - clock0)
    failed = done = 0
    try:
        await backend.start()
        async with TaskManager(concurrency=limit, retry_base_s=0.05) as tm:
            pending: set[asyncio.Future[Any]] = set()
            while time.monotonic() - clock0 < duration_s:
                while len(pending) < limit.limit * 2:  # keep a queue in front of the limit
                    pending.add(tm.submit_chat(backend, chat("hi"), retries=5).future)
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for f in finished:
                    done += 1
                    failed += 1 if f.exception() is not None else 0
            seconds = time.monotonic() - clock0
        async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}/stats") as r:
            stats = await r.json()
    finally:
        await backend.aclose()
        proc.terminate()
        proc.wait()
    history = list(limit.history)
    reach = next((t for t, v in history if v >= 0.9 * cap), None)
    return Adaptive(cap, done, failed, stats["ok"], stats["refused"], history, seconds, reach)


# -- report ------------------------------------------------------------------------


def io_table(managed: list[Row], bare: list[Row]) -> str:
    base, base_bare = managed[0].throughput, bare[0].throughput
    lines = [
        "| workers | calls (all runs) | TaskManager speedup | efficiency | success | mean latency ms "
        "| client CPU us/call | bare gather speedup | bare efficiency | manager/bare throughput |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m, b in zip(managed, bare, strict=True):
        s, sb = m.throughput / base, b.throughput / base_bare
        lines.append(
            f"| {m.workers} | {m.tasks} | {s:.1f}x | {s / m.workers:.2f} | {m.success:.1%} "
            f"| {m.mean_latency_ms:.0f} | {m.cpu_us_per_task:.0f} | {sb:.1f}x | {sb / b.workers:.2f} | {m.throughput / b.throughput:.2f} |"
        )
    return "\n".join(lines)


def plain_table(rows: list[Row]) -> str:
    base = rows[0].throughput
    lines = [
        "| workers | tasks | speedup | efficiency | success | mean latency ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        s = r.throughput / base
        lines.append(
            f"| {r.workers} | {r.tasks} | {s:.1f}x | {s / r.workers:.2f} | {r.success:.1%} "
            f"| {r.mean_latency_ms:.0f} |"
        )
    return "\n".join(lines)


def cpu_table(c: CpuResults) -> str:
    base = c.rows[0].throughput
    cores = os.cpu_count() or 1
    lines = [
        "| workers | processes | tasks | speedup | success | mean latency ms | wall s |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in [*c.rows, c.threads]:
        label = f"{r.workers}" if r is not c.threads else "2 threads (GIL baseline)"
        procs = min(r.workers, cores) if r is not c.threads else 0
        lines.append(
            f"| {label} | {procs} | {r.tasks} | {r.throughput / base:.2f}x "
            f"| {r.success:.1%} | {r.mean_latency_ms:.0f} | {r.seconds:.2f} |"
        )
    lines += [
        "",
        "2 processes over 1, repeated and interleaved (median of "
        f"{len(c.pairs)}): TaskManager {statistics.median(c.pairs):.2f}x "
        f"({', '.join(f'{x:.2f}' for x in c.pairs)}); bare `multiprocessing.Pool` "
        f"{statistics.median(c.bare_pairs):.2f}x ({', '.join(f'{x:.2f}' for x in c.bare_pairs)}).",
    ]
    return "\n".join(lines)


def plot(managed: list[Row], cpu: list[Row], adaptive: Adaptive, out_dir: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    ws = [r.workers for r in managed]
    ax.plot(ws, ws, "k--", label="ideal")
    ax.plot(
        ws, [r.throughput / managed[0].throughput for r in managed], "o-", label="I/O-bound (200 ms calls)"
    )
    ax.plot(ws, [r.throughput / cpu[0].throughput for r in cpu], "s-", label="CPU-bound (process pool)")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="workers",
        ylabel="speedup vs 1 worker",
        title="thrifty TaskManager speedup",
    )
    ax.legend()
    fig.tight_layout()
    speed = out_dir / "tasks_speedup.png"
    fig.savefig(speed, dpi=110)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ts = [t for t, _ in adaptive.history] + [adaptive.seconds]
    vs = [v for _, v in adaptive.history] + [adaptive.history[-1][1]]
    ax.step(ts, vs, where="post", label="AIMD limit")
    ax.axhline(adaptive.cap, color="r", ls="--", label=f"capacity ({adaptive.cap})")
    ax.set(
        xlabel="seconds", ylabel="concurrency limit", title="Adaptive limit finding an upstream's capacity"
    )
    ax.legend()
    fig.tight_layout()
    adapt = out_dir / "tasks_adaptive.png"
    fig.savefig(adapt, dpi=110)
    return [str(speed.relative_to(ROOT)), str(adapt.relative_to(ROOT))]


@dataclass
class Results:
    header: list[str]
    managed: list[Row]
    bare: list[Row]
    local: list[Row]
    cpu: CpuResults
    adaptive: Adaptive
    overhead_us: tuple[float, float]


def adaptive_table(a: Adaptive) -> str:
    mean = a.steady_mean()
    rate = a.upstream_429 / max(1, a.upstream_429 + a.upstream_ok)
    cuts = sum(1 for x, y in zip(a.history, list(a.history)[1:], strict=False) if y[1] < x[1])
    reach = "never" if a.first_reach_s is None else f"{a.first_reach_s:.1f} s"
    return (
        "| capacity | steady-state mean limit (2nd half) | within 10% | 429s / upstream calls | failed tasks "
        "| first at 90% of capacity | limit cuts |\n|---:|---:|---|---:|---:|---:|---:|\n"
        f"| {a.cap} | {mean:.1f} ({mean / a.cap:.0%}) | {'yes' if abs(mean / a.cap - 1) <= 0.1 else 'no'} "
        f"| {a.upstream_429} / {a.upstream_429 + a.upstream_ok} = {rate:.2%} | {a.failed} of {a.tasks} "
        f"| {reach} | {cuts} |"
    )


async def run(args: argparse.Namespace) -> Results:
    header = [
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}; load average at start {os.getloadavg()[0]:.1f} "
        "(the machine is shared with other engineers' jobs)",
        f"- date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- command: `.venv/bin/python benchmarks/tasks_bench.py{' --quick' if args.quick else ''}` (uvloop)",
    ]
    print("\n".join(header), flush=True)
    rounds = 4 if args.quick else 8
    managed, bare = await io_bench(rounds)
    print(io_table(managed, bare), flush=True)
    local = await io_in_process(rounds)
    print(plain_table(local), flush=True)
    cpu = await cpu_bench(n=8 if args.quick else 16, repeats=1 if args.quick else 2)
    print(cpu_table(cpu), flush=True)
    adaptive = await adaptive_bench(cap=32, duration_s=10 if args.quick else 20)
    print(adaptive_table(adaptive), flush=True)
    cost = await overhead()
    print(f"overhead per no-op task: manager {cost[0]:.0f} us, bare {cost[1]:.0f} us", flush=True)
    header[0] += f"; load average at end {os.getloadavg()[0]:.1f}"
    return Results(header, managed, bare, local, cpu, adaptive, cost)


def verdicts(r: Results) -> list[str]:
    def eff(rows: list[Row]) -> tuple[float, int]:
        values = [x.throughput / rows[0].throughput / x.workers for x in rows]
        low = min(values)
        return low, rows[values.index(low)].workers

    http, http_at = eff(r.managed)
    local, local_at = eff(r.local)
    cpu2 = statistics.median(r.cpu.pairs)
    a = r.adaptive
    ratio = a.steady_mean() / a.cap
    rate = a.upstream_429 / max(1, a.upstream_429 + a.upstream_ok)
    hit = {True: "HIT", False: "MISS"}
    return [
        f"- I/O-bound parallel efficiency >= 0.9 up to 256 workers, over HTTP: {hit[http >= 0.9]} "
        f"(lowest {http:.2f}, at {http_at} workers); the manager alone, no HTTP: {hit[local >= 0.9]} "
        f"(lowest {local:.2f}, at {local_at})",
        f"- CPU-bound >= 1.8x on 2 processes: {hit[cpu2 >= 1.8]} (median {cpu2:.2f}x; a bare "
        f"multiprocessing.Pool got {statistics.median(r.cpu.bare_pairs):.2f}x in the same run)",
        f"- adaptive limit within 10% of capacity: {hit[abs(ratio - 1) <= 0.1]} ({ratio:.0%}); errors under 1%: "
        f"{hit[rate < 0.01 and a.failed == 0]} ({rate:.2%} of upstream calls were 429s; {a.failed} tasks "
        "failed after retries)",
    ]


def render(r: Results, images: list[str]) -> str:
    imgs = "\n".join(f"![{Path(i).stem}](../img/{Path(i).name})" for i in images)
    return (
        "\n\n".join(
            [
                "# Task manager benchmark",
                "\n".join(r.header),
                "## Targets\n\n" + "\n".join(verdicts(r)),
                "## I/O-bound: chat calls over HTTP to a fake upstream (200 ms +/- 20 ms), by workers\n\n"
                "`thrifty.fakeupstream` in its own process; the client is thrifty's OpenAI provider (`remote_backend`, lean httptools transport). Speedup is "
                "throughput over the 1-worker run; efficiency is speedup / workers. The bare columns are the same "
                "calls through `asyncio.Semaphore` + `gather`, the floor any manager adds cost to. Each setting "
                "ran twice (three times at 256 workers), alternating which side went first; a row is the median "
                "wall time. The seeds "
                "reported 3.2x at 4 workers and 8.3x at 16.\n\n"
                + io_table(r.managed, r.bare)
                + f"\n\nAt 256 workers the ideal pace is {256 / 0.2:.0f} calls a second. The client spent "
                f"{r.managed[-1].cpu_us_per_task:.0f} us of CPU per call there, "
                f"{256 / 0.2 * r.managed[-1].cpu_us_per_task / 1e6:.2f} of a core at that pace, and the fake "
                "upstream's server needs its share of the same 2 cores.",
                "## I/O-bound, the manager alone: in-process calls that wait 200 ms +/- 20 ms\n\n"
                + plain_table(r.local)
                + f"\n\nCost per task, 20,000 no-op tasks at 256 workers: TaskManager {r.overhead_us[0]:.0f} us, "
                f"bare `Semaphore` + `gather` {r.overhead_us[1]:.0f} us (the manager adds priority queues, per-model "
                "limits, retries, deadlines and cancellation handles). At 256 workers x 200 ms, 1,280 tasks a "
                "second start and finish, so on a CPU-starved machine the event loop itself, not the waiting, "
                "sets the pace.",
                "## CPU-bound: a pure-Python loop (~0.1 s a task)\n\nThe process pool has min(workers, cores) "
                "processes; more workers than cores cannot help on this 2-core machine.\n\n"
                + cpu_table(r.cpu),
                "## Adaptive limit (AIMD, starting at 4) against an upstream that answers 429 above 32 in flight\n\n"
                + adaptive_table(r.adaptive),
                NOTES,
                imgs,
            ]
        )
        + "\n"
    )


NOTES = """## Reading the results

- Efficiency here is a batch's makespan, so it includes the tail of the last round: with 8 rounds of
  200 +/- 20 ms calls the slowest of 256 slots finishes about 5% after the average one.
- Over HTTP at 256 workers the client and the fake upstream's server share the same 2 cores; the last
  column shows the TaskManager within a few percent of a bare `gather`, so what is left of the gap to
  0.9 is the HTTP stack's CPU per call, not the manager.
- The machine is shared with other engineers' jobs. CPU-bound speedup needs two idle cores: in runs at
  load average 3 to 11 neither the TaskManager nor a bare `multiprocessing.Pool` passed about 1.5x."""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer tasks, shorter adaptive run")
    parser.add_argument("--write", help="write the markdown report here")
    parser.add_argument("--serve-capped", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_capped:
        serve_capped(args.serve_capped)
        return
    try:
        import uvloop
    except ImportError:
        results = asyncio.run(run(args))
    else:
        results = uvloop.run(run(args))
    images = plot(results.managed, results.cpu.rows, results.adaptive, ROOT / "docs" / "img")
    report = render(results, images)
    if args.write:
        Path(args.write).write_text(report)
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
