"""A/B tests of prompt variants that stop themselves.

Each context (a cluster of similar requests, per owner) has a champion variant
(``baseline`` at first) and at most one candidate. A user is assigned to the
candidate or the champion deterministically, by a hash of (context, candidate,
user) against the candidate's share (capped by ``max_share``), so a user sees
one formulation for the whole test. Outcomes are Bernoulli: a rating of 4-5
is a success, 1-2 a failure, 3 half of each; an implicit signal (a regenerate,
a rephrased question) is a failure of weight ``implicit_weight``.

Each arm keeps a Beta(1 + wins, 1 + losses) posterior. Once both arms hold
``min_samples`` outcomes, the probability that the candidate is better,
P(p_cand > p_champ), is computed from the two posteriors (a normal
approximation of their difference, which is close for these sample sizes):
at ``confidence`` or above the candidate is promoted, at ``1 - confidence``
or below it is rolled back and not proposed again in that context.

A user whose own ratings disagree with the context keeps an override: the
operator they asked for (by complaining) applies to them at once, and is
dropped when they rate it badly.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Any

from .operators import BASELINE


@dataclass(slots=True)
class Arm:
    wins: float = 0.0
    losses: float = 0.0

    @property
    def n(self) -> float:
        return self.wins + self.losses

    @property
    def mean(self) -> float:
        return (1.0 + self.wins) / (2.0 + self.n)

    @property
    def variance(self) -> float:
        a, b = 1.0 + self.wins, 1.0 + self.losses
        return a * b / ((a + b) ** 2 * (a + b + 1.0))

    def to_json(self) -> dict[str, float]:
        return {"wins": round(self.wins, 3), "losses": round(self.losses, 3), "mean": round(self.mean, 4)}


def prob_better(candidate: Arm, champion: Arm) -> float:
    """P(p_candidate > p_champion) under the two Beta posteriors (normal approximation)."""
    sd = math.sqrt(candidate.variance + champion.variance)
    z = (candidate.mean - champion.mean) / sd
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def bucket(*parts: str) -> float:
    """A stable number in [0, 1) for ``parts``: the same user lands in the same arm every time."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


@dataclass(slots=True)
class Experiment:
    """The variants of one context and what happened to them."""

    owner: str
    context: str
    champion: str = BASELINE
    candidate: str | None = None
    arms: dict[str, Arm] = field(default_factory=dict)
    rejected: set[str] = field(default_factory=set)
    history: list[dict[str, Any]] = field(default_factory=list)
    outcomes: int = 0  # outcomes recorded since the current candidate started

    def assign(self, user: str, share: float) -> tuple[str, str]:
        """(variant, source) for ``user``; source is "experiment" or "promoted" or ""."""
        if self.candidate is not None and bucket(self.owner, self.context, self.candidate, user) < share:
            return self.candidate, "experiment"
        return self.champion, "" if self.champion == BASELINE else "promoted"

    def propose(self, variant: str) -> bool:
        """Start testing ``variant`` against the champion; False if busy or already decided."""
        if self.candidate is not None or variant == self.champion or variant in self.rejected:
            return False
        self.candidate = variant
        self.arms[variant] = Arm()
        self.arms.setdefault(self.champion, Arm())
        self.outcomes = 0
        self.history.append({"event": "started", "variant": variant, "against": self.champion})
        return True

    def record(self, variant: str, reward: float, weight: float = 1.0) -> None:
        arm = self.arms.setdefault(variant, Arm())
        arm.wins += reward * weight
        arm.losses += (1.0 - reward) * weight
        if variant == self.candidate:
            self.outcomes += 1

    def decide(self, min_samples: int, confidence: float) -> str | None:
        """Promote or roll back the candidate when the evidence is in: "promoted", "rolled_back", None."""
        candidate = self.candidate
        if candidate is None:
            return None
        cand, champ = self.arms[candidate], self.arms.setdefault(self.champion, Arm())
        if cand.n < min_samples or champ.n < min_samples:
            return None
        p = prob_better(cand, champ)
        facts = {
            "variant": candidate,
            "against": self.champion,
            "p_better": round(p, 4),
            "candidate": cand.to_json(),
            "champion": champ.to_json(),
        }
        if p >= confidence:
            self.history.append({"event": "promoted", **facts})
            self.champion, self.candidate = candidate, None
            return "promoted"
        if p <= 1.0 - confidence:
            self.history.append({"event": "rolled_back", **facts})
            self.rejected.add(candidate)
            self.candidate = None
            return "rolled_back"
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "context": self.context,
            "champion": self.champion,
            "candidate": self.candidate,
            "arms": {name: arm.to_json() for name, arm in self.arms.items()},
            "rejected": sorted(self.rejected),
            "history": list(self.history),
        }


def reward_of(rating: int) -> float:
    """A 1-5 rating as a Bernoulli outcome: 4-5 success, 1-2 failure, 3 half."""
    return 1.0 if rating >= 4 else 0.0 if rating <= 2 else 0.5
