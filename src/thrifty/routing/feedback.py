"""Learning where similar requests should start, from outcomes.

A small contextual bandit: the context is the request type
(:func:`thrifty.routing.features.request_kind`), the arms are the candidate
tiers, the reward is success (a rating of 4-5, an accepted cascade answer) or
failure (a rating of 1-2, an escalation, an upstream error). Each (type, tier)
keeps a Beta posterior whose prior leans on the base policy's choice: tiers at
or above it start just above the target success rate, cheaper ones just below.
A request starts at the cheapest tier whose posterior mean clears the target,
so good ratings walk a request type down to cheaper tiers and bad ones push it
up. With ``explore > 0`` it occasionally tries one tier cheaper (seeded RNG).
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from .settings import FeedbackSettings

PRIOR_STRENGTH = 4.0
MAX_PENDING = 10_000


@dataclass(slots=True)
class Arm:
    wins: float = 0.0
    losses: float = 0.0


class FeedbackLearner:
    def __init__(self, settings: FeedbackSettings) -> None:
        self.settings = settings
        self._arms: dict[tuple[str, str], Arm] = {}
        self._pending: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._rng = random.Random(settings.seed)
        self.events = 0

    def start(self, kind: str, tiers: Sequence[str], proposed: int) -> int:
        """Index of the tier a request of this kind should start at."""
        target = self.settings.target
        for i, tier in enumerate(tiers):
            if self._mean(kind, tier, above=i >= proposed) >= target:
                choice = i
                break
        else:
            choice = len(tiers) - 1
        if choice > 0 and self.settings.explore and self._rng.random() < self.settings.explore:
            choice -= 1
        return choice

    def _mean(self, kind: str, tier: str, *, above: bool) -> float:
        target = self.settings.target
        lean = 0.05 if above else -0.05
        prior = min(0.99, max(0.01, target + lean))
        arm = self._arms.get((kind, tier), Arm())
        a = prior * PRIOR_STRENGTH + arm.wins
        b = (1 - prior) * PRIOR_STRENGTH + arm.losses
        return a / (a + b)

    def record(self, kind: str, tier: str, reward: float) -> None:
        """reward in [0, 1]: 1 a success, 0 a failure."""
        arm = self._arms.setdefault((kind, tier), Arm())
        arm.wins += reward
        arm.losses += 1.0 - reward
        self.events += 1

    def remember(self, request_id: str, kind: str, tier: str) -> None:
        """Keep which type and tier served a request, for a later rating."""
        self._pending[request_id] = (kind, tier)
        self._pending.move_to_end(request_id)
        while len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)

    def rate(self, request_id: str, rating: int) -> bool:
        """Apply a 1-5 rating to the tier that served the request; False if unknown."""
        found = self._pending.pop(request_id, None)  # a rating counts once, however many routers hear it
        if found is None:
            return False
        kind, tier = found
        self.record(kind, tier, (min(5, max(1, rating)) - 1) / 4.0)
        return True

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Posterior success means per request type and tier, for explain and stats."""
        out: dict[str, dict[str, float]] = {}
        for (kind, tier), arm in self._arms.items():
            total = arm.wins + arm.losses
            out.setdefault(kind, {})[tier] = round(arm.wins / total, 3) if total else 0.0
        return out
