"""The terminal view: the graph while it runs, a timeline after. Plain ANSI, no dependencies."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TextIO

from .executor import State, TaskRun

_MARK = {
    State.WAITING: ("·", "2"),
    State.READY: ("○", "36"),
    State.RUNNING: ("▶", "33"),
    State.DONE: ("✓", "32"),
    State.FAILED: ("✗", "31"),
    State.CANCELLED: ("-", "2"),
}


def _paint(text: str, code: str, color: bool) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if color else text


def task_line(run: TaskRun, now: float, color: bool = False) -> str:
    mark, code = _MARK[run.state]
    if run.state is State.RUNNING and run.started is not None:
        clock = f"{now - run.started:6.2f}s"
    elif run.state.terminal and run.started is not None:
        clock = f"{run.duration:6.2f}s"
    else:
        clock = " " * 7
    deps = ",".join(f"${d}" for d in sorted(run.task.deps))
    after = f"  after {deps}" if deps and run.state in (State.WAITING, State.READY) else ""
    error = f"  {run.error}" if run.error is not None else ""
    label = f"{mark} ${run.id:<3} {run.state.value:<9} {clock}  {run.task.describe()}"
    return _paint(label, code, color) + after + error


class LiveView:
    """An executor event hook that redraws every task's state in place."""

    def __init__(self, out: TextIO, *, color: bool | None = None, min_interval_s: float = 0.05) -> None:
        self.out = out
        tty = bool(getattr(out, "isatty", lambda: False)())
        self.color = tty if color is None else color
        self.live = tty
        self.min_interval_s = min_interval_s
        self.runs: dict[int, TaskRun] = {}
        self._drawn = 0
        self._last = 0.0

    def __call__(self, run: TaskRun) -> None:
        self.runs[run.id] = run
        now = time.monotonic()
        if self.live and (run.state.terminal or now - self._last >= self.min_interval_s):
            self._last = now
            self.draw()

    def draw(self) -> None:
        lines = self.render()
        up = f"\x1b[{self._drawn}F" if self._drawn else ""
        self.out.write(up + "\x1b[J" + "".join(line + "\n" for line in lines))
        self.out.flush()
        self._drawn = len(lines)

    def render(self) -> list[str]:
        now = max((r.ended or r.started or 0.0 for r in self.runs.values()), default=0.0)
        counts = {s: 0 for s in State}
        for run in self.runs.values():
            counts[run.state] += 1
        head = "  ".join(f"{s.value} {n}" for s, n in counts.items() if n)
        rows = [task_line(r, now, self.color) for _, r in sorted(self.runs.items())]
        return [f"plan: {head}", *rows]


def timeline(runs: Iterable[TaskRun], width: int = 50) -> str:
    """A Gantt chart of when each task waited (·) and ran (█)."""
    runs = sorted(runs, key=lambda r: r.id)
    timed = [r for r in runs if r.ended is not None]
    if not timed:
        return "(no tasks ran)"
    origin = min(r.added for r in timed)
    span = max((r.ended or 0.0) - origin for r in timed) or 1e-9
    scale = width / span
    lines = [f"timeline: {span:.3f}s across {len(timed)} tasks"]
    for run in timed:
        start = run.started if run.started is not None else run.ended or origin
        a = int((run.added - origin) * scale)
        b = int((start - origin) * scale)
        c = max(b + (1 if run.started is not None else 0), int(((run.ended or start) - origin) * scale))
        bar = " " * a + "·" * (b - a) + "█" * (c - b)
        lines.append(
            f"${run.id:<3} {run.task.tool[:12]:<12} |{bar:<{width}}| {run.duration:.3f}s {run.state.value}"
        )
    return "\n".join(lines)
