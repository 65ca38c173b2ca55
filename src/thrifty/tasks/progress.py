"""A one-line progress bar for batch jobs (stderr), and what a response cost.

On a terminal the line is redrawn in place; elsewhere (a log file, CI) a
line is printed at most every ``log_every_s`` seconds, plus a final one.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from typing import TextIO

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
    input_rate, output_rate = _rates(model)
    usage = response.usage
    return usage.prompt_tokens * input_rate + usage.completion_tokens * output_rate


@functools.lru_cache(maxsize=256)
def _rates(model: str) -> tuple[float, float]:
    """USD per input and output token from genai-prices' bundled table; 0 if unknown."""
    try:
        import genai_prices  # deferred: the table takes a moment to load
    except ImportError:  # pragma: no cover - a core dependency
        return 0.0, 0.0
    try:
        probe = 1_000_000
        calc_in = genai_prices.calc_price(genai_prices.Usage(input_tokens=probe), model)
        calc_out = genai_prices.calc_price(genai_prices.Usage(output_tokens=probe), model)
    except (LookupError, ValueError):
        return 0.0, 0.0
    return float(calc_in.total_price) / probe, float(calc_out.total_price) / probe
