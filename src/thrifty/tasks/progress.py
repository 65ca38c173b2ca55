"""A one-line progress bar for batch jobs (stderr), and what a response cost.

On a terminal the line is redrawn in place; elsewhere (a log file, CI) a
line is printed at most every ``log_every_s`` seconds, plus a final one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from .. import prices
from ..types import ChatResponse


class ProgressBar:
    def __init__(
        self,
        total: int,
        *,
        done: int = 0,
        failed: int = 0,
        cost: float = 0.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        width: int = 24,
        log_every_s: float = 5.0,
    ) -> None:
        self.total = total
        self.done = done  # finished this run or an earlier one, failed included
        self.failed = failed
        self.cost = cost
        self.stream = stream if stream is not None else sys.stderr
        self._clock = clock
        self._start = clock()
        self._resumed = done
        self._width = width
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._every = 0.1 if self._tty else log_every_s
        self._last = float("-inf")

    def update(self, *, ok: bool, cost: float = 0.0) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        self.cost += cost
        now = self._clock()
        if now - self._last >= self._every:
            self._last = now
            self._draw()

    @property
    def rate(self) -> float:
        """Requests finished per second in this run."""
        elapsed = self._clock() - self._start
        return (self.done - self._resumed) / elapsed if elapsed > 0 else 0.0

    def render(self) -> str:
        share = self.done / self.total if self.total else 1.0
        filled = round(share * self._width)
        bar = "#" * filled + "-" * (self._width - filled)
        rate = self.rate
        left = self.total - self.done
        eta = _clock_text(left / rate) if rate > 0 and left else ("0:00" if not left else "?")
        return (
            f"[{bar}] {self.done}/{self.total} done, {self.failed} failed, "
            f"{rate:.1f} req/s, ETA {eta}, ${self.cost:.4f}"
        )

    def close(self) -> None:
        self._draw(final=True)

    def _draw(self, final: bool = False) -> None:
        text = self.render()
        if self._tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _clock_text(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def response_cost(response: ChatResponse) -> float:
    """USD for one response, priced by the model it names; 0 when the table does not know it."""
    model = response.body.get("model")
    if not isinstance(model, str) or not model:
        return 0.0
    usage = response.usage
    return prices.for_model(model).full_cost(usage.prompt_tokens, usage.completion_tokens)
