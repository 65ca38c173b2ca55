"""Routing metrics: accuracy-vs-cost hulls, AIQ, cost to match; APGR and CPT.

RouterBench style (many models): a policy is a set of (average cost, accuracy)
points, one per setting of its knob. Mixing two settings at random reaches
every point between them, so a policy's curve is the upper convex hull of its
points, made non-decreasing. AIQ is the area under that curve over the cost
range of the single models, divided by the range (so it is an accuracy).

RouteLLM style (strong/weak pair): routing the ``k`` highest-scored prompts to
the strong model gives performance ``perf(k)``; PGR = (perf - weak) / (strong -
weak). APGR is the mean PGR over strong-call shares 0..100%; CPT(x) is the
smallest strong-call share whose PGR reaches x.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Vector = NDArray[np.float64]

Point = tuple[float, float]  # (cost, accuracy)


def hull(points: Sequence[Point]) -> list[Point]:
    """Upper-left convex hull, non-decreasing in accuracy, sorted by cost."""
    pts = sorted(set(points))
    frontier: list[Point] = []
    for p in pts:
        if frontier and p[1] <= frontier[-1][1]:
            continue  # costs more, no better
        if frontier and p[0] == frontier[-1][0]:
            frontier.pop()  # same cost, better accuracy
        while len(frontier) >= 2 and _cross(frontier[-2], frontier[-1], p) >= 0:
            frontier.pop()
        frontier.append(p)
    return frontier


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def accuracy_at(curve: Sequence[Point], cost: float) -> float:
    """Best accuracy reachable at ``cost`` on a hull (flat beyond its ends)."""
    if cost <= curve[0][0]:
        return curve[0][1]
    for (c0, a0), (c1, a1) in zip(curve, curve[1:], strict=False):
        if cost <= c1:
            return a0 + (a1 - a0) * (cost - c0) / (c1 - c0)
    return curve[-1][1]


def aiq(points: Sequence[Point], low: float, high: float, steps: int = 2000) -> float:
    """Mean accuracy of the policy's hull over costs in [low, high]."""
    curve = hull(points)
    total = 0.0
    for i in range(steps):
        total += accuracy_at(curve, low + (high - low) * (i + 0.5) / steps)
    return total / steps


def cost_to_reach(points: Sequence[Point], accuracy: float) -> float | None:
    """Smallest average cost at which the hull reaches ``accuracy``; None if never."""
    curve = hull(points)
    if curve[0][1] >= accuracy:
        return curve[0][0]
    for (c0, a0), (c1, a1) in zip(curve, curve[1:], strict=False):
        if a1 >= accuracy:
            return c0 + (c1 - c0) * (accuracy - a0) / (a1 - a0)
    return None


def pgr_curve(score: Vector, weak: Vector, strong: Vector, steps: int = 100) -> list[tuple[float, float]]:
    """(strong-call share, PGR) as the top-scored prompts go to the strong model."""
    import numpy as np

    n = len(score)
    order = np.argsort(-score, kind="stable")
    gain = (strong - weak)[order]
    base, top = float(weak.mean()), float(strong.mean())
    gap = top - base if top != base else 1.0
    cumulative = np.concatenate([[0.0], np.cumsum(gain)])
    out = []
    for i in range(steps + 1):
        k = round(n * i / steps)
        perf = base + cumulative[k] / n
        out.append((i / steps, (perf - base) / gap))
    return out


def apgr(curve: Sequence[tuple[float, float]]) -> float:
    """Average PGR over strong-call shares (trapezoid rule)."""
    area = 0.0
    for (x0, y0), (x1, y1) in zip(curve, curve[1:], strict=False):
        area += (x1 - x0) * (y0 + y1) / 2
    return area


def cpt(curve: Sequence[tuple[float, float]], target: float) -> float:
    """Smallest strong-call share whose PGR reaches ``target`` (linear between steps)."""
    prev = curve[0]
    if prev[1] >= target:
        return prev[0]
    for point in curve[1:]:
        if point[1] >= target:
            x0, y0 = prev
            x1, y1 = point
            return x0 + (x1 - x0) * (target - y0) / (y1 - y0) if y1 != y0 else x1
        prev = point
    return 1.0
