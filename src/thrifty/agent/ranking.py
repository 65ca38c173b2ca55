"""Which ready task goes first under a cap: the longest estimated remaining path.

A task's priority is its *remaining path*: its own duration estimate plus the
longest remaining path among the tasks waiting on it. Estimates come from the
task itself (the plan's ``est_s``, else its tool's ``estimate(args)``) or, for
tasks without one, from their tool's learned average.

Keeping priorities current costs O(log n) per task whatever the graph's size:

- a new task only lengthens the paths of its waiting ancestors;
- when a tool's learned average moves by more than a quarter, the tasks using
  it are re-ranked, and then, deepest first, only those ancestors whose path
  actually changed (never the whole graph again);
- that re-ranking is paid for out of a credit of a few task visits earned per
  finished task, so noisy averages cannot make it cost more than a constant
  per task (amortised); until the credit allows, tasks keep their last ranks.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Mapping

from .durations import Durations
from .plan import Task
from .tools import ToolRegistry

log = logging.getLogger(__name__)

CREDIT_PER_TASK = 4  # task visits of re-ranking earned per finished task
MOVED = 0.25  # an average that moved by more than this fraction re-ranks its tasks


class Ranking:
    """Priorities of the tasks that have not started, and the heap of ready ones.

    ``children`` is the executor's map from a task to the tasks waiting on it
    (shared, not copied). Tasks join with :meth:`add` in dependency order,
    become ready with :meth:`ready`, and leave with :meth:`leave` when they
    start, fail or are cancelled.
    """

    def __init__(
        self, registry: ToolRegistry, durations: Durations, children: Mapping[int, list[int]]
    ) -> None:
        self.registry = registry
        self.durations = durations
        self._children = children
        self._deps: dict[int, frozenset[int]] = {}
        self._order: list[int] = []  # every task in the order added: a topological order
        self._seq: dict[int, int] = {}  # task id -> its position in _order
        self._waiting: dict[int, bool] = {}  # unstarted tasks in _order's order -> is it ready
        self._est: dict[int, float] = {}  # each unstarted task's duration estimate
        self._bottom: dict[int, float] = {}  # each unstarted task's remaining path
        self._tool_est: dict[str, float] = {}  # the average each tool's tasks are ranked by
        self._by_tool: dict[str, set[int]] = {}  # unstarted tasks ranked by their tool's average
        self._moved: set[str] = set()  # tools whose average moved since their tasks were ranked
        self._credit = 0.0
        self._heap: list[tuple[float, int]] = []  # (-remaining path, id) of ready tasks; stale ones skipped

    def estimate_s(self, task_id: int) -> float:
        return self._est[task_id]

    def remaining_s(self, task_id: int) -> float:
        return self._bottom[task_id]

    # --- tasks joining and leaving ---------------------------------------------

    def add(self, task: Task, *, propagate: bool = True) -> None:
        """Rank a new task, then lengthen its waiting ancestors' paths (unless ``propagate``
        is off: a whole plan is added, and :meth:`rank_all` follows)."""
        self._deps[task.id] = task.deps
        self._seq[task.id] = len(self._order)
        self._order.append(task.id)
        self._waiting[task.id] = False
        est = self._own_estimate(task)
        if est is None:  # ranked by the tool's learned average, and re-ranked when it moves
            est = self._tool_est.get(task.tool, -1.0)
            if est < 0:
                est = self._tool_est[task.tool] = self.durations.estimate(
                    task.tool, self.registry.spec(task.tool).est_s
                )
            self._by_tool.setdefault(task.tool, set()).add(task.id)
        self._est[task.id] = self._bottom[task.id] = est
        if not propagate:
            return
        stack = [task.id]
        while stack:
            child = stack.pop()
            for dep in self._deps[child]:
                if dep not in self._waiting:
                    continue
                longer = self._est[dep] + self._bottom[child]
                if longer > self._bottom[dep]:
                    self._bottom[dep] = longer
                    if self._waiting[dep]:
                        heapq.heappush(self._heap, (-longer, dep))
                    stack.append(dep)

    def _own_estimate(self, task: Task) -> float | None:
        own = task.est_s
        estimate = self.registry.spec(task.tool).estimate
        if own is None and estimate is not None:
            try:
                own = estimate(task.args)
            except Exception:
                log.exception("the duration estimate of tool %r failed; using its average", task.tool)
        return float(own) if own is not None and 0 <= own < float("inf") else None

    def ready(self, task_id: int) -> None:
        self._waiting[task_id] = True
        heapq.heappush(self._heap, (-self._bottom[task_id], task_id))

    def leave(self, task: Task) -> None:
        """The task started or ended: it no longer takes part."""
        if self._waiting.pop(task.id, None) is not None:
            self._by_tool.get(task.tool, set()).discard(task.id)

    # --- choosing ----------------------------------------------------------------

    def pop(self, free: int | None) -> int | None:
        """The ready task with the longest remaining path (None if none is ready).

        ``free``: slots open under the cap (None: no cap). Re-ranking happens
        only when it can change a choice: more tasks ready than slots.
        """
        if self._moved and self._credit >= 0 and free is not None and len(self._heap) > free:
            self._rerank()
        while self._heap:
            key, tid = heapq.heappop(self._heap)
            if self._waiting.get(tid) and -key == self._bottom[tid]:
                return tid
        return None

    def finished(self) -> None:
        """A task finished: earn re-ranking credit."""
        self._credit += CREDIT_PER_TASK

    def learned(self, tool: str, average: float) -> None:
        """The tool's learned average is now ``average``; re-rank later if it moved enough."""
        used = self._tool_est.get(tool)
        if used is not None and abs(average - used) > MOVED * max(used, 1e-6) and self._by_tool.get(tool):
            self._moved.add(tool)

    # --- ranking -------------------------------------------------------------------

    def rank_all(self) -> None:
        """Every waiting task's remaining path from the latest averages: one pass, deepest first."""
        for tool in self._tool_est:
            self._refresh(tool)
        self._moved.clear()
        for tid in reversed(self._waiting):
            self._bottom[tid] = self._est[tid] + self._tail(tid)
        self._rebuild_heap()

    def _refresh(self, tool: str) -> None:
        est = self._tool_est[tool] = self.durations.estimate(tool, self.registry.spec(tool).est_s)
        for tid in self._by_tool.get(tool, ()):
            self._est[tid] = est

    def _rerank(self) -> None:
        """Follow the averages that moved: their tasks, then only the ancestors whose path changed."""
        pending: list[int] = []
        for tool in self._moved:
            self._refresh(tool)
            pending.extend(-self._seq[tid] for tid in self._by_tool.get(tool, ()))
        self._moved.clear()
        heapq.heapify(pending)  # deepest first: a task after every dependent of it
        order, seq, est, bottom, waiting, children, deps = (
            self._order,
            self._seq,
            self._est,
            self._bottom,
            self._waiting,
            self._children,
            self._deps,
        )
        visited, last = 0, 1
        while pending:
            key = heapq.heappop(pending)
            if key == last:
                continue  # queued by two of its dependents
            last = key
            tid = order[-key]
            visited += 1
            tail = 0.0
            for c in children[tid]:
                if c in waiting and bottom[c] > tail:
                    tail = bottom[c]
            new = est[tid] + tail
            if new == bottom[tid]:
                continue
            bottom[tid] = new
            if waiting[tid]:
                heapq.heappush(self._heap, (-new, tid))
            for dep in deps[tid]:
                if dep in waiting:
                    heapq.heappush(pending, -seq[dep])
        self._credit -= visited
        if len(self._heap) > 4 * len(waiting) + 64:
            self._rebuild_heap()  # drop the entries re-ranking made stale

    def _tail(self, tid: int) -> float:
        """The longest remaining path among the tasks waiting on ``tid``."""
        waiting, bottom = self._waiting, self._bottom
        return max((bottom[c] for c in self._children[tid] if c in waiting), default=0.0)

    def _rebuild_heap(self) -> None:
        self._heap = [(-self._bottom[t], t) for t, ready in self._waiting.items() if ready]
        heapq.heapify(self._heap)
