"""A replica killed mid-run (SIGKILL) and restarted by the supervisor: requests lost, time to recover.

Three `python -m thrifty.fakeupstream` replicas (lognormal latency, median 20 ms) run under
thrifty's ReplicaSupervisor; a balanced group (least outstanding, health checks every 0.5 s)
over them takes 8 closed-loop workers for 12 s; at 4 s replica 1 is killed. Baseline in the
same run: the same kill with retries off.

    .venv/bin/python benchmarks/balance_restart.py [--seconds 12] [--out docs/bench/balance_restart.md] [--plot docs/img/balance_restart.png]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

from balance_common import TABLE_HEAD, Result, group_over, header, load, row
from thrifty.balance.replicas import ReplicaSpec, ReplicaSupervisor

CHILD = (
    sys.executable,
    "-m",
    "thrifty.fakeupstream",
    "--port",
    "{port}",
    "--name",
    "r{index}",
    "--latency",
    "lognormal",
    "--latency-ms",
    "20",
    "--latency-sigma",
    "0.25",
)


async def run(seconds: float, kill_at: float, **options: Any) -> tuple[Result, dict[str, float]]:
    supervisor = ReplicaSupervisor(ReplicaSpec(replicas=3, command=CHILD, restart_backoff=0.5))
    await supervisor.start()
    group = group_over(
        [(d.name, d.api_base or "") for d in supervisor.deployments()],
        strategy="least_outstanding",
        health_check=True,
        health_interval=0.5,
        **options,
    )
    await group.start()
    victim = group.members[1]  # type: ignore[attr-defined]
    marks: dict[str, float] = {}

    async def kill_and_watch(t0: float) -> None:
        await asyncio.sleep(kill_at)
        supervisor.kill(1)
        marks["kill"] = time.perf_counter() - t0
        served = victim.served
        while supervisor.replicas[1].state != "running" or supervisor.replicas[1].restarts == 0:
            await asyncio.sleep(0.01)
        marks["process back"] = time.perf_counter() - t0
        while victim.served == served and time.perf_counter() - t0 < seconds:
            await asyncio.sleep(0.01)
        if victim.served > served:
            marks["serving again"] = time.perf_counter() - t0

    try:
        t0 = time.perf_counter()
        watcher = asyncio.ensure_future(kill_and_watch(t0))
        result = await load(group, seconds=seconds, concurrency=8)
        await asyncio.wait_for(watcher, 30)
    finally:
        await group.aclose()
        await supervisor.aclose()
    return result, marks


def plot(runs: list[tuple[str, Result, dict[str, float]]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 3.2 * len(runs)), sharex=True)
    for ax, (label, result, marks) in zip(axes, runs, strict=True):
        ok = [(t, 1000 * lat) for t, lat, good in result.timeline if good]
        bad = [(t, 1000 * lat) for t, lat, good in result.timeline if not good]
        ax.scatter(*zip(*ok, strict=True), s=2, label="answered")
        if bad:
            ax.scatter(*zip(*bad, strict=True), s=14, color="red", marker="x", label="error seen by client")
        for k, (name, t) in enumerate(marks.items()):
            ax.axvline(t, linestyle="--", linewidth=1, color="gray")
            ax.text(t, ax.get_ylim()[1] * (0.9 - 0.12 * k), " " + name, fontsize=7)
        ax.set_ylabel("latency, ms")
        ax.set_title(label, fontsize=9)
        ax.legend(loc="upper right", fontsize=7)
    axes[-1].set_xlabel("seconds since start")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


async def main(seconds: float) -> tuple[str, list[tuple[str, Result, dict[str, float]]]]:
    kill_at = seconds / 3
    base, base_marks = await run(seconds, kill_at, retries=0)
    mine, marks = await run(seconds, kill_at)
    lines = [
        header("A replica killed mid-run and restarted"),
        "",
        TABLE_HEAD,
        row("kill r1, retries off (baseline)", base, base),
        row("kill r1, thrifty defaults", mine, base),
        "",
        "| run | killed at s | process back after s | serving again after s | requests lost |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, result, m in (("retries off", base, base_marks), ("thrifty defaults", mine, marks)):
        again = f"{m['serving again'] - m['kill']:.2f}" if "serving again" in m else "not within the run"
        lines.append(
            f"| {label} | {m['kill']:.2f} | {m['process back'] - m['kill']:.2f} | "
            f"{again} | {result.total - len(result.latencies)} |"
        )
    runs = [("kill r1, retries off", base, base_marks), ("kill r1, thrifty defaults", mine, marks)]
    return "\n".join(lines), runs


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--out", default=None)
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()
    text, runs = asyncio.run(main(args.seconds))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    if args.plot:
        plot(runs, args.plot)
