"""Elastic local capacity: static-min, static-max, reactive and predictive scaling in one run.

Two parts, both printed and written to ``--out``:

1. **Simulated** (the policies are thrifty's own ``ScalingPolicy`` and ``SeasonalBaseline``;
   the replicas, queue and clock are simulated, so a day runs in seconds). A replica serves
   ``--slots`` requests at once, each taking ``--service-ms`` (its capacity:
   slots / service time), and takes ``--warm-s`` from start to its first request (the
   measured start of part 2 can be passed in). Two loads, Poisson arrivals:
   a step (low -> high -> low) and a compressed daily pattern (24 "hours" of
   ``--hour-s`` seconds: night, a morning ramp, a lunch dip, an evening decline). The
   predictive policy's baseline is fitted on seven earlier cycles of the same pattern
   (bucket = one "hour"). Reported: p95 latency, replica-seconds, and the requests over the
   latency objective (1.5x the static-max p95) during the ramps.
2. **Real**: an ``ElasticGroup`` over ``python -m thrifty.fakeupstream`` replicas (per-replica
   capacity enforced by the group: ``max_concurrency`` slots per replica, fixed upstream
   latency), a step load from closed-loop clients; reported: p95, replica-seconds, and the
   time from a replica's start to its first served request.

    .venv/bin/python benchmarks/elastic.py [--out docs/bench/elastic.md] [--real-seconds 40]
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import math
import os
import platform
import random
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from thrifty.balance.scaling import ScalingPolicy, ScalingSettings, Signals
from thrifty.balance.seasonal import SeasonalBaseline

# -- loads: requests per second over one cycle --------------------------------------


@dataclass(frozen=True)
class Load:
    name: str
    bucket_s: float  # one bucket of the season (an "hour" of the compressed day)
    rates: tuple[float, ...]  # requests/s per bucket, linearly joined between bucket middles
    smooth: bool = True

    @property
    def cycle_s(self) -> float:
        return self.bucket_s * len(self.rates)

    def rate(self, t: float) -> float:
        n, b = len(self.rates), self.bucket_s
        if not self.smooth:
            return self.rates[int(t // b) % n]
        x = (t % self.cycle_s) / b - 0.5
        i = math.floor(x)
        frac = x - i
        return self.rates[i % n] * (1 - frac) + self.rates[(i + 1) % n] * frac

    def ramps(self) -> list[tuple[float, float]]:
        """Windows (within a cycle) where the rate rises by more than half a bucket's worth."""
        out = []
        for i, r in enumerate(self.rates):
            before = self.rates[i - 1]
            if r > before * 1.5 and r - before >= 2:
                out.append(((i - 0.5) * self.bucket_s, (i + 1) * self.bucket_s))
        return out


def step_load(bucket_s: float) -> Load:
    low, high = 2.0, 14.0
    return Load("step", bucket_s, (low,) * 5 + (high,) * 5 + (low,) * 5, smooth=False)


def daily_load(hour_s: float) -> Load:
    rates = (2, 2, 2, 2, 2, 2, 3, 6, 12, 16, 16, 15, 10, 14, 16, 16, 14, 10, 6, 4, 3, 2, 2, 2)
    return Load("daily", hour_s, tuple(float(r) for r in rates))


def arrivals(load: Load, start: float, seconds: float, rng: random.Random) -> list[float]:
    """Poisson arrivals at the load's rate (thinning)."""
    peak = max(load.rates)
    out, t = [], start
    while True:
        t += rng.expovariate(peak)
        if t >= start + seconds:
            return out
        if rng.random() * peak <= load.rate(t):
            out.append(t)


# -- the simulated group --------------------------------------------------------------


@dataclass
class Replica:
    ready_at: float
    busy: int = 0
    state: str = "warming"  # warming | ready | draining | stopped
    started: float = 0.0


@dataclass
class Outcome:
    name: str
    latencies: list[tuple[float, float]] = field(default_factory=list)  # (arrival, latency)
    replica_s: float = 0.0
    decisions: int = 0
    peak: int = 0

    def p95(self) -> float:
        values = sorted(lat for _, lat in self.latencies)
        return values[min(len(values) - 1, int(0.95 * len(values)))] if values else 0.0

    def over(self, limit: float, windows: list[tuple[float, float]]) -> int:
        return sum(1 for t, lat in self.latencies if lat > limit and any(a <= t < b for a, b in windows))


@dataclass(frozen=True)
class Model:
    slots: int = 2  # requests one replica serves at once
    service_s: float = 0.5
    warm_s: float = 5.0  # start -> first request
    sigma: float = 0.3  # service times are lognormal around service_s
    seed: int = 7


def simulate(
    name: str,
    load: Load,
    model: Model,
    policy: ScalingPolicy | None,
    fixed: int,
    *,
    cycles: int = 1,
    baseline: SeasonalBaseline | None = None,
    start: float = 0.0,
) -> Outcome:
    """One run: a FIFO in front of replicas; the policy decides every second (None: ``fixed``)."""
    rng = random.Random(model.seed)
    seconds = load.cycle_s * cycles
    pending = deque(arrivals(load, start, seconds, rng))
    replicas = [Replica(ready_at=start, state="ready", started=start) for _ in range(fixed)]
    queue: deque[float] = deque()
    done: list[tuple[float, int]] = []  # (finish time, replica index) heap
    out = Outcome(name, peak=fixed)
    t, tick = start, start
    settings = policy.settings if policy is not None else None

    def dispatch(now: float) -> None:
        for i, r in enumerate(replicas):
            while r.state == "ready" and r.busy < model.slots and queue:
                arrived = queue.popleft()
                r.busy += 1
                finish = now + model.service_s * rng.lognormvariate(0, model.sigma)
                out.latencies.append((arrived, finish - arrived))
                heapq.heappush(done, (finish, i))

    while t < start + seconds or done or queue:
        next_arrival = pending[0] if pending else math.inf
        next_done = done[0][0] if done else math.inf
        next_ready = min((r.ready_at for r in replicas if r.state == "warming"), default=math.inf)
        now = min(next_arrival, next_done, next_ready, tick)
        if now == math.inf:
            break
        live = sum(1 for r in replicas if r.state in ("warming", "ready", "draining"))
        out.replica_s += live * (now - t)
        t = now
        if now == next_arrival:
            queue.append(pending.popleft())
        elif now == next_done:
            _, i = heapq.heappop(done)
            replicas[i].busy -= 1
            if replicas[i].state == "draining" and replicas[i].busy == 0:
                replicas[i].state = "stopped"
        elif now == next_ready:
            for r in replicas:
                if r.state == "warming" and r.ready_at <= now:
                    r.state = "ready"
        else:
            tick += 1.0
            if policy is not None and settings is not None and now < start + seconds:
                forecast = baseline.forecast(now, settings.lead_s) if baseline is not None else None
                ready = [r for r in replicas if r.state == "ready"]
                signals = Signals(
                    now,
                    ready=len(ready),
                    warming=sum(1 for r in replicas if r.state == "warming"),
                    in_flight=sum(r.busy for r in ready),
                    queued=len(queue),
                    forecast=forecast,
                )
                decision = policy.decide(signals)
                if decision.change:
                    out.decisions += 1
                    _apply(replicas, decision.target - decision.current, now, model)
                out.peak = max(out.peak, decision.target)
        dispatch(now)
    return out


def _apply(replicas: list[Replica], change: int, now: float, model: Model) -> None:
    if change > 0:
        replicas.extend(Replica(ready_at=now + model.warm_s, started=now) for _ in range(change))
        return
    live = [r for r in replicas if r.state in ("warming", "ready")]
    for r in sorted(live, key=lambda r: (r.state != "warming", -r.started))[:-change]:
        r.state = "draining" if r.busy else "stopped"


def history(load: Load, model: Model, cycles: int) -> SeasonalBaseline:
    """A baseline fitted on ``cycles`` earlier cycles: each request as a ledger row (ts, latency)."""
    rng = random.Random(model.seed + 1)
    rows = [
        (t, model.service_s * rng.lognormvariate(0, model.sigma))
        for t in arrivals(load, -cycles * load.cycle_s, cycles * load.cycle_s, rng)
    ]
    return SeasonalBaseline(bucket_s=load.bucket_s, season=len(load.rates)).fit(rows)


def compare(load: Load, model: Model, settings: ScalingSettings) -> tuple[list[Outcome], float, float]:
    baseline = history(load, model, 7)
    runs = [
        simulate("static-min", load, model, None, settings.min_replicas),
        simulate("static-max", load, model, None, settings.max_replicas),
        simulate("reactive", load, model, ScalingPolicy(settings), settings.min_replicas),
        simulate(
            "predictive",
            load,
            model,
            ScalingPolicy(replace(settings, predictive=True)),
            settings.min_replicas,
            baseline=baseline,
        ),
    ]
    objective = 1.5 * runs[1].p95()
    return runs, objective, runs[1].replica_s


def table(load: Load, model: Model, settings: ScalingSettings) -> list[str]:
    runs, objective, static_max_rs = compare(load, model, settings)
    ramps = load.ramps()
    lines = [
        f"**{load.name}** ({load.cycle_s:.0f} s, {len(load.rates)} buckets of {load.bucket_s:g} s; "
        f"rates {min(load.rates):g}-{max(load.rates):g} req/s; objective = 1.5 x static-max p95 = "
        f"{objective * 1000:.0f} ms; ramps: {', '.join(f'{a:.0f}-{b:.0f} s' for a, b in ramps)})",
        "",
        "| policy | p95 ms | p95 / static-max | replica-s | / static-max | requests over objective in ramps | decisions | peak replicas |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = runs[1].p95()
    for r in runs:
        lines.append(
            f"| {r.name} | {r.p95() * 1000:.0f} | {r.p95() / base:.2f} | {r.replica_s:.0f} | "
            f"{r.replica_s / static_max_rs:.2f} | {r.over(objective, ramps)} | {r.decisions} | {r.peak} |"
        )
    return lines


# -- part 2: real replicas ----------------------------------------------------------------


async def real_step(
    seconds: float, latency_ms: int, slots: int, autoscale: dict[str, Any] | None
) -> dict[str, Any]:
    """Closed-loop clients against an elastic group of fake-upstream replicas: low, high, low."""
    from thrifty import providers
    from thrifty.balance import build_group
    from thrifty.balance.elastic import ElasticGroup
    from thrifty.balance.replicas import replica_config
    from thrifty.config import ModelGroup, parse_config
    from thrifty.testing import chat

    scaling = autoscale or {}
    fixed = autoscale is None
    max_replicas = int(scaling.get("max_replicas", 4))
    if fixed:
        scaling = {"min_replicas": max_replicas, "max_replicas": max_replicas}
    base = parse_config(
        {
            "models": [
                {
                    "name": "local",
                    "deployments": [{"provider": "local", "model": "m", "max_concurrency": slots}],
                    "max_queue": 10000,
                    "autoscale": scaling,
                }
            ]
        },
        source="bench.yaml",
    )
    config = replica_config(base, 0)
    spec = config.models[0]
    child = [
        sys.executable,
        "-m",
        "thrifty.fakeupstream",
        "--port",
        "{port}",
        "--latency-ms",
        str(latency_ms),
    ]
    options = {**spec.options, "replicas": {**spec.options["replicas"], "command": child}}
    spec = ModelGroup(name=spec.name, deployments=spec.deployments, options=options)
    group = build_group(spec, [providers.build(d) for d in spec.deployments], config)
    assert isinstance(group, ElasticGroup)
    await group.start()
    latencies: list[float] = []
    replica_s = 0.0
    phase = {"clients": 1}
    stop = asyncio.Event()

    async def client(index: int) -> None:
        while not stop.is_set():
            if index >= phase["clients"]:
                await asyncio.sleep(0.02)
                continue
            started = time.perf_counter()
            await group.complete(chat("hi", model="local", max_tokens=1, temperature=0))
            latencies.append(time.perf_counter() - started)

    high = 8
    tasks = [asyncio.ensure_future(client(i)) for i in range(high)]
    t0 = time.perf_counter()
    last = t0
    while (now := time.perf_counter()) - t0 < seconds:
        third = (now - t0) / seconds
        phase["clients"] = high if 1 / 3 <= third < 2 / 3 else 1
        replica_s += group.count("ready", "warming", "draining") * (now - last)
        last = now
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks)
    status = group.status()["scaling"]
    await group.aclose()
    ordered = sorted(latencies)
    return {
        "p95": ordered[int(0.95 * (len(ordered) - 1))],
        "replica_s": replica_s,
        "requests": len(latencies),
        "first_served": [r["first_served_s"] for r in status["replicas"] if r["first_served_s"] is not None],
        "warm": [r["warm_s"] for r in status["replicas"] if r["warm_s"] is not None],
        "decisions": len(status["decisions"]),
    }


def real_part(seconds: float) -> list[str]:
    latency_ms, slots = 200, 2
    autoscale = {
        "min_replicas": 1,
        "max_replicas": 4,
        "target_in_flight": 1.5,
        "window_s": 2,
        "quiet_s": 5,
        "interval_s": 0.5,
    }
    runs = {
        "static-min": asyncio.run(real_step(seconds, latency_ms, slots, {**autoscale, "max_replicas": 1})),
        "static-max": asyncio.run(real_step(seconds, latency_ms, slots, None)),
        "reactive": asyncio.run(real_step(seconds, latency_ms, slots, autoscale)),
    }
    # static-min and static-max: the same group pinned at 1 and at 4 replicas
    lines = [
        f"Fake-upstream replicas: {latency_ms} ms per request, {slots} requests at once per replica "
        f"(capacity {slots * 1000 / latency_ms:g} req/s each, enforced by the group's `max_concurrency`), "
        f"max 4 replicas; closed-loop clients: 1, then 8 for the middle third of {seconds:g} s, then 1. "
        "Reactive policy: target 1.5 in flight per replica, demand over 2 s, quiet period 5 s, a decision "
        "every 0.5 s (scaled down with the run). No predictive run here: a step of seconds has no "
        "hour-of-week history; part 1 covers it. Replica-seconds count warming and draining replicas too.",
        "",
        "| policy | requests | p95 ms | p95 / static-max | replica-s | / static-max | start -> in rotation s | start -> first served s |",
        "|---|---:|---:|---:|---:|---:|---|---|",
    ]
    ref = runs["static-max"]
    for name, r in runs.items():
        warm = ", ".join(f"{w:.2f}" for w in r["warm"])
        served = ", ".join(f"{w:.2f}" for w in r["first_served"])
        lines.append(
            f"| {name} | {r['requests']} | {r['p95'] * 1000:.0f} | {r['p95'] / ref['p95']:.2f} | "
            f"{r['replica_s']:.0f} | {r['replica_s'] / ref['replica_s']:.2f} | {warm} | {served} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--service-ms", type=float, default=500)
    parser.add_argument(
        "--warm-s", type=float, nargs="+", default=[5.0, 20.0], help="replica start times to simulate"
    )
    parser.add_argument("--hour-s", type=float, default=300.0, help="one 'hour' of the compressed day")
    parser.add_argument("--real-seconds", type=float, default=90.0, help="0 skips the real part")
    args = parser.parse_args()
    model = Model(slots=args.slots, service_s=args.service_ms / 1000)
    settings = ScalingSettings(
        min_replicas=1, max_replicas=8, target_in_flight=model.slots * 0.75, window_s=5, quiet_s=60
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    lines = [
        "# Elastic local capacity",
        "",
        f"Machine: {platform.machine()}, {platform.processor() or platform.machine()}, Python {platform.python_version()}; "
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; commit {commit}; "
        f"load average at start {os.getloadavg()[0]:.1f} (the machine is shared).",
        "",
        "Command: `PYTHONPATH=src .venv/bin/python benchmarks/elastic.py " + " ".join(sys.argv[1:]) + "`",
        "",
        "## 1. Simulated time: thrifty's policies over simulated replicas",
        "",
        f"Replica capacity: {model.slots} requests at once, {model.service_s * 1000:.0f} ms each "
        f"(lognormal, sigma {model.sigma:g}; {model.slots / model.service_s:g} req/s). "
        f"Policy: min 1, max 8, target {settings.target_in_flight:g} in flight per replica (75%), demand "
        f"averaged over {settings.window_s:g} s, quiet period {settings.quiet_s:g} s; predictive: baseline "
        f"fitted on 7 earlier cycles (one bucket per 'hour'), lead = max(2 x start time, a quarter 'hour'), "
        f"headroom {settings.headroom:g}. Time is simulated (no sleeping), so the compressed day's 'hours' "
        f"are {args.hour_s:g} s; replica start time is not compressed. Arrivals are Poisson, the same "
        "sequence for every policy; there is no queue limit (static-min's p95 is its backlog).",
        "",
    ]
    for warm_s in args.warm_s:
        run_model = replace(model, warm_s=warm_s)
        run_settings = replace(settings, lead_s=max(2 * warm_s, args.hour_s / 4), cold_start_s=warm_s)
        lines += [f"### Replica start time {warm_s:g} s", ""]
        for load in (step_load(args.hour_s), daily_load(args.hour_s)):
            lines += table(load, run_model, run_settings) + [""]
    if args.real_seconds > 0:
        lines += ["## 2. Real replica processes (step load)", ""] + real_part(args.real_seconds) + [""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
