"""Per-tool duration estimates, learned online as tasks finish."""

from __future__ import annotations


class Durations:
    """An exponentially weighted moving average of each tool's run time.

    Until a tool has run, its estimate is the hint given (the tool's declared
    ``est_s``). Share one instance across runs so estimates keep improving.
    """

    def __init__(self, alpha: float = 0.3) -> None:
        if not 0 < alpha <= 1:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self._mean: dict[str, float] = {}
        self.observed: dict[str, int] = {}

    def estimate(self, tool: str, hint: float) -> float:
        return self._mean.get(tool, hint)

    def observe(self, tool: str, seconds: float) -> float:
        """Fold one run into the estimate; returns the new estimate."""
        old = self._mean.get(tool)
        new = seconds if old is None else old + self.alpha * (seconds - old)
        self._mean[tool] = new
        self.observed[tool] = self.observed.get(tool, 0) + 1
        return new
