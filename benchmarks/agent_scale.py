"""The agent scheduler before and after, in one run: cost per task at scale, fork-join under a cap.

    .venv/bin/python benchmarks/agent_scale.py                   # ~2 min, prints the comparison
    .venv/bin/python benchmarks/agent_scale.py --baseline REV    # compare against another commit

``agent_schedule.py`` runs this too and writes its lines into docs/bench/agent.md.
The baseline is the package as it was at ``BASELINE`` (exported with ``git archive``
to a temporary folder); each measurement runs in a fresh subprocess whose
``PYTHONPATH`` selects the baseline's sources or this tree's, alternating
between the two so that load on the shared machine falls on both alike.

- **scale**: random layered DAGs of 250, 1,000 and 4,000 tasks under cap 4;
  tools sleep 0.2–2 ms and share per-tool learned estimates (the path that
  re-prioritises). Per task: the executor's scheduling in CPU time (its
  entry points, timed with ``time.thread_time``) and in wall clock (as the
  executor counts it), the whole run's CPU time (what other processes' load
  cannot inflate), and the CPU time PlanBuilder takes to check the plan.
- **fork-join**: k independent searches then one fan-in task, k > cap = 4
  (question-set plans of width 5 and 8, and random widths 5–10). With per-tool
  estimates every search looks alike and they start in plan order; with
  per-call estimates the longest go first. Scored against the bound
  max(critical path, work / cap) and against the exact optimum.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import agent_graphs as G

ROOT = Path(__file__).resolve().parents[1]
# The executor before per-task estimates, incremental re-ranking and the sandbox.
BASELINE = "3cf9498"
SIZES = (250, 1000, 4000)
CAP = 4
ROUNDS = 3  # subprocess pairs per size (baseline, current), medians reported


# --- measurements (run in a subprocess, against whichever thrifty is on the path) ---


def _registry(per_call: bool) -> Any:
    from agent_schedule import sim
    from thrifty.agent import ToolRegistry, ToolSpec

    params = {
        "type": "object",
        "properties": {"tid": {"type": "integer"}, "ms": {"type": "number"}, "inputs": {}},
    }
    extra: dict[str, Any] = {"estimate": lambda args: args["ms"] / 1000} if per_call else {}
    return ToolRegistry(
        ToolSpec(name=t, description=t, parameters=params, target=sim, est_s=0.05, retries=0, **extra)
        for t in G.TOOLS
    )


def _tasks(graph: G.Graph, reg: Any, est: dict[int, float] | None = None) -> list[Any]:
    from thrifty.agent import PlanBuilder, Ref, Task

    extra = (lambda n: {"est_s": est[n.id]}) if est else (lambda n: {})
    tasks = [
        Task(
            id=n.id,
            tool=n.tool,
            args={"tid": n.id, "ms": n.ms, "inputs": [Ref(d) for d in n.deps]},
            **extra(n),
        )
        for n in graph.nodes
    ]
    return PlanBuilder(reg).add_all(tasks)


def cpu_meter(cls: Any) -> dict[str, float]:
    """Count the CPU time this thread spends inside ``cls``'s scheduling entry points.

    ``add``, ``add_all`` and ``_settle`` (dispatch happens inside them) exist in
    both versions; nested calls (add_all -> add) count once. CPU time, unlike
    the executor's own wall-clock counter, does not grow when other processes
    take the core.
    """
    meter = {"s": 0.0, "depth": 0}
    for name in ("add", "add_all", "_settle"):
        inner = getattr(cls, name)

        def timed(self: Any, *args: Any, _inner: Any = inner) -> Any:
            meter["depth"] += 1
            t = time.thread_time()
            try:
                return _inner(self, *args)
            finally:
                meter["depth"] -= 1
                if meter["depth"] == 0:
                    meter["s"] += time.thread_time() - t

        setattr(cls, name, timed)
    return meter


async def scale(n: int) -> dict[str, float]:
    from thrifty.agent import Durations, Executor

    meter = cpu_meter(Executor)
    graph = G.layered(n, random.Random(n))
    for node in graph.nodes:
        node.ms /= 50  # 0.2-2 ms: many events per second, so the scheduler's own cost shows
    reg = _registry(per_call=False)
    plan_cpu = time.process_time()
    tasks = _tasks(graph, reg)
    plan_cpu = time.process_time() - plan_cpu
    ex = Executor(reg, cap=CAP, durations=Durations())
    cpu, wall = time.process_time(), time.perf_counter()
    await ex.run(tasks)
    return {
        "bookkeeping_us": ex.overhead_s / n * 1e6,
        "bookkeeping_cpu_us": meter["s"] / n * 1e6,
        "plan_cpu_us": plan_cpu / n * 1e6,
        "cpu_us": (time.process_time() - cpu) / n * 1e6,
        "wall_s": time.perf_counter() - wall,
    }


def forkjoin_graphs() -> list[G.Graph]:
    graphs = G.question_sets(random.Random(20261122), {"parallelqa": 12, "movie": 6, "hotpotqa": 6})
    graphs = [g for g in graphs if g.size - 1 > CAP]
    rng = random.Random(611)
    for i in range(16):
        graphs.append(
            G.fan_in("qa:random", f"fan-in#{i}", rng.randint(5, 10), rng.choice(("math", "llm")), rng)
        )
    return graphs


async def forkjoin(mode: str) -> dict[str, list[float]]:
    """Each graph's makespan over its bound and over its optimum, best of two runs.

    ``mode``: ``per-tool`` (no per-call estimates), ``per-call`` (the tool estimates
    each call from its arguments: exact), ``per-call-noisy`` (the plan carries an
    estimate off by a lognormal factor, sigma 0.3: about ±30%).
    """
    from thrifty.agent import Durations, Executor

    reg = _registry(per_call=mode == "per-call")
    durations = Durations()
    noise = random.Random(7)
    out: dict[str, list[float]] = {"bound": [], "optimum": []}
    for graph in forkjoin_graphs():
        ms = {n.id: n.ms for n in graph.nodes}
        est = (
            {k: v / 1000 * math.exp(noise.gauss(0, 0.3)) for k, v in ms.items()}
            if mode == "per-call-noisy"
            else None
        )
        best = float("inf")
        for _ in range(2):
            ex = Executor(reg, cap=CAP, durations=durations)
            t = time.perf_counter()
            await ex.run(_tasks(graph, reg, est))
            best = min(best, (time.perf_counter() - t) * 1000)
        out["bound"].append(best / G.lower_bound(graph, ms, CAP))
        out["optimum"].append(best / (G.fan_in_optimum(graph, ms, CAP) or math.nan))
    return out


# --- the comparison (this process) ---------------------------------------------------


def export(rev: str, into: Path) -> Path:
    archive = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


def part(src: Path, *args: str) -> Any:
    env = dict(os.environ, PYTHONPATH=f"{src}{os.pathsep}{ROOT / 'benchmarks'}")
    done = subprocess.run(
        [sys.executable, str(Path(__file__)), "--part", *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def compare(baseline: str = BASELINE) -> list[str]:
    med = statistics.median
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"before": export(baseline, Path(tmp)), "after": ROOT / "src"}
        runs: dict[tuple[str, int], list[dict[str, float]]] = {}
        for _ in range(ROUNDS):
            for n in SIZES:
                for who, src in trees.items():
                    runs.setdefault((who, n), []).append(part(src, "scale", str(n)))
        fj = {"before": part(trees["before"], "forkjoin", "per-tool")}
        for mode in ("per-tool", "per-call", "per-call-noisy"):
            fj[f"after, {mode}"] = part(trees["after"], "forkjoin", mode)
    lines = [
        f"Before/after in one run (before = commit {baseline}; {ROUNDS} fresh processes per cell, medians):",
        "",
        "| tasks (layered, cap 4) | scheduling CPU µs/task, before | after | ratio | scheduling wall µs/task, before | after "
        "| whole run CPU µs/task, before | after | checking the plan (PlanBuilder) CPU µs/task, before | after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n in SIZES:
        b, a = runs[("before", n)], runs[("after", n)]

        def m(rows: list[dict[str, float]], key: str) -> float:
            return med(r[key] for r in rows)

        lines.append(
            f"| {n:,} | {m(b, 'bookkeeping_cpu_us'):.1f} | {m(a, 'bookkeeping_cpu_us'):.1f} "
            f"| {m(a, 'bookkeeping_cpu_us') / m(b, 'bookkeeping_cpu_us'):.2f} "
            f"| {m(b, 'bookkeeping_us'):.1f} | {m(a, 'bookkeeping_us'):.1f} | {m(b, 'cpu_us'):.1f} | {m(a, 'cpu_us'):.1f} "
            f"| {m(b, 'plan_cpu_us'):.1f} | {m(a, 'plan_cpu_us'):.1f} |"
        )
    count = len(next(iter(fj.values()))["bound"])
    lines += [
        "",
        f"| fork-join under cap 4 ({count} plans, k = 5–10 searches + 1 fan-in) | makespan / bound, median | worst | / optimum, median | worst |",
        "|---|---|---|---|---|",
    ]
    for who, res in fj.items():
        lines.append(
            f"| {who} | {med(res['bound']):.3f} | {max(res['bound']):.3f} "
            f"| {med(res['optimum']):.3f} | {max(res['optimum']):.3f} |"
        )
    return lines


def main() -> None:
    if "--part" in sys.argv:
        what, arg = sys.argv[sys.argv.index("--part") + 1 :][:2]
        result = asyncio.run(scale(int(arg)) if what == "scale" else forkjoin(arg))
        print(json.dumps(result))
        return
    baseline = sys.argv[sys.argv.index("--baseline") + 1] if "--baseline" in sys.argv else BASELINE
    print("\n".join(compare(baseline)))


if __name__ == "__main__":
    main()
