"""Task graphs for the agent scheduling benchmark (not a benchmark itself).

Every task carries a pre-drawn simulated latency, so all executors face the
same work. Latency distributions (milliseconds):

    search  lognormal, median 40, sigma 0.6, clipped to [10, 100]
    math    uniform [10, 20]
    llm     lognormal, median 60, sigma 0.4, clipped to [20, 100]

Question sets come from LLMCompiler (../shared/data/agent): each question's
``branch`` width (ParallelQA: 2..5; movie recommendations: 8; HotpotQA
comparison: 2) gives that many independent searches, then one fan-in task.
Random graphs are seeded: chains, fan-out/fan-in, stacked diamonds, and two
unbalanced families (branches of unequal length, random layered DAGs).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

# LLMCompiler's question sets live in shared/data/agent next to the checkout (or a worktree's parent)
DATA = next(
    (
        p / "shared" / "data" / "agent"
        for p in Path(__file__).resolve().parents
        if (p / "shared" / "data" / "agent").is_dir()
    ),
    Path(__file__).resolve().parents[2] / "shared" / "data" / "agent",
)
TOOLS = ("search", "math", "llm")


@dataclass
class Node:
    id: int
    tool: str
    ms: float
    deps: list[int] = field(default_factory=list)


@dataclass
class Graph:
    family: str
    name: str
    nodes: list[Node]
    unbalanced: bool = False

    @property
    def size(self) -> int:
        return len(self.nodes)


def draw_ms(tool: str, rng: random.Random) -> float:
    if tool == "search":
        return min(100.0, max(10.0, rng.lognormvariate(math.log(40), 0.6)))
    if tool == "math":
        return rng.uniform(10, 20)
    return min(100.0, max(20.0, rng.lognormvariate(math.log(60), 0.4)))


def _node(nodes: list[Node], tool: str, deps: list[int], rng: random.Random) -> int:
    nid = len(nodes) + 1
    nodes.append(Node(nid, tool, draw_ms(tool, rng), sorted(set(deps))))
    return nid


def fan_in(family: str, name: str, width: int, sink: str, rng: random.Random) -> Graph:
    nodes: list[Node] = []
    leaves = [_node(nodes, "search", [], rng) for _ in range(width)]
    _node(nodes, sink, leaves, rng)
    return Graph(family, name, nodes)


def question_sets(rng: random.Random, per_set: dict[str, int]) -> list[Graph]:
    """Sampled questions from the three LLMCompiler sets, as fan-out/fan-in plans."""
    sets = {
        "parallelqa": ("parallelqa_dataset.json", "math", None),
        "movie": ("movie_recommendations_formatted.json", "llm", 8),
        "hotpotqa": ("hotpotqa_comparison.json", "llm", 2),
    }
    graphs = []
    for family, (file, sink, fixed) in sets.items():
        questions = json.loads((DATA / file).read_text())
        for q in rng.sample(questions, per_set.get(family, 0)):
            width = int(q.get("branch") or fixed or 2)
            graphs.append(fan_in(f"qa:{family}", f"{family}#{q['id']}", width, sink, rng))
    return graphs


def chain(n: int, rng: random.Random) -> Graph:
    nodes: list[Node] = []
    prev: list[int] = []
    for _ in range(n):
        prev = [_node(nodes, rng.choice(TOOLS), prev, rng)]
    return Graph("chain", f"chain-{n}", nodes)


def fan_out_in(n: int, rng: random.Random) -> Graph:
    nodes: list[Node] = []
    root = _node(nodes, "llm", [], rng)
    middle = [_node(nodes, rng.choice(TOOLS), [root], rng) for _ in range(n - 2)]
    _node(nodes, "llm", middle, rng)
    return Graph("fan-out/in", f"fan-{n}", nodes)


def diamonds(n: int, rng: random.Random) -> Graph:
    nodes: list[Node] = []
    top = _node(nodes, rng.choice(TOOLS), [], rng)
    while len(nodes) + 3 <= n:
        left = _node(nodes, rng.choice(TOOLS), [top], rng)
        right = _node(nodes, rng.choice(TOOLS), [top], rng)
        top = _node(nodes, rng.choice(TOOLS), [left, right], rng)
    return Graph("diamonds", f"diamonds-{len(nodes)}", nodes)


def branches(n: int, rng: random.Random) -> Graph:
    """Root, then k = max(3, n // 6) chains of Pareto-distributed (unequal) length, then a sink."""
    nodes: list[Node] = []
    root = _node(nodes, "search", [], rng)
    k = max(3, n // 6)
    weights = [rng.paretovariate(1.2) for _ in range(k)]
    lengths = [max(1, round(w / sum(weights) * (n - 2))) for w in weights]
    lengths[lengths.index(max(lengths))] += (n - 2) - sum(lengths)
    ends = []
    for length in lengths:
        prev = root
        for _ in range(max(1, length)):
            prev = _node(nodes, rng.choice(TOOLS), [prev], rng)
        ends.append(prev)
    _node(nodes, "llm", ends, rng)
    return Graph("branches", f"branches-{len(nodes)}", nodes, unbalanced=True)


def layered(n: int, rng: random.Random) -> Graph:
    """A random DAG: each task needs 1-3 random earlier tasks (from any earlier layer)."""
    nodes: list[Node] = []
    sources = max(2, n // 8)
    for _ in range(sources):
        _node(nodes, "search", [], rng)
    while len(nodes) < n:
        k = rng.randint(1, min(3, len(nodes)))
        window = nodes[-max(8, n // 4) :]
        deps = [rng.choice(window).id for _ in range(k)]
        _node(nodes, rng.choice(TOOLS), deps, rng)
    return Graph("layered", f"layered-{n}", nodes, unbalanced=True)


def random_graphs(rng: random.Random) -> list[Graph]:
    graphs = [chain(n, rng) for n in (5, 20)]
    graphs += [fan_out_in(n, rng) for n in (5, 50, 200)]
    graphs += [diamonds(n, rng) for n in (7, 25)]
    graphs += [branches(n, rng) for n in (10, 20, 30, 40, 60, 80, 200)]
    graphs += [layered(n, rng) for n in (10, 20, 30, 40, 60, 80, 200)]
    return graphs


def levels(graph: Graph) -> list[list[Node]]:
    """Tasks grouped by depth (longest path from a source): the level-by-level schedule."""
    depth: dict[int, int] = {}
    for node in graph.nodes:  # ids are in dependency order
        depth[node.id] = 1 + max((depth[d] for d in node.deps), default=-1)
    out: list[list[Node]] = [[] for _ in range(max(depth.values()) + 1)]
    for node in graph.nodes:
        out[depth[node.id]].append(node)
    return out


def critical_path(graph: Graph, ms: dict[int, float]) -> float:
    finish: dict[int, float] = {}
    for node in graph.nodes:
        finish[node.id] = ms[node.id] + max((finish[d] for d in node.deps), default=0.0)
    return max(finish.values())


def lower_bound(graph: Graph, ms: dict[int, float], cap: int | None) -> float:
    """max(critical path, total work / cap) for the given task durations."""
    cp = critical_path(graph, ms)
    return cp if cap is None else max(cp, sum(ms.values()) / cap)


def fan_in_optimum(graph: Graph, ms: dict[int, float], cap: int | None) -> float | None:
    """The exact best makespan of a question-set graph (k sources -> one sink), by search.

    Packing k independent look-ups onto ``cap`` slots is what the lower bound
    max(critical path, work / cap) ignores; for k <= 10 trying every
    assignment is cheap. None for other graph shapes.
    """
    if not graph.family.startswith("qa"):
        return None
    sources = sorted((ms[n.id] for n in graph.nodes if not n.deps), reverse=True)
    sink = sum(ms[n.id] for n in graph.nodes if n.deps)
    if cap is None or len(sources) <= cap:
        return max(sources) + sink
    best = [sum(sources)]

    def place(i: int, loads: list[float]) -> None:
        if max(loads) >= best[0]:
            return
        if i == len(sources):
            best[0] = max(loads)
            return
        seen = set()
        for slot in range(cap):
            if loads[slot] in seen:
                continue
            seen.add(loads[slot])
            loads[slot] += sources[i]
            place(i + 1, loads)
            loads[slot] -= sources[i]

    place(0, [0.0] * cap)
    return best[0] + sink
