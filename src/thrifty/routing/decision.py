"""What a router decided for one request, for headers, the ledger and explain."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Decision:
    """The route of one request: the policy, the tier it landed on, and why."""

    router: str
    policy: str
    tier: str
    model: str  # the model group that answered
    score: float | None = None  # rules: complexity; learned: predicted quality; cascade: answer score
    escalations: int = 0
    tried: list[str] = field(default_factory=list)  # cascade: tiers called, in order
    features: dict[str, float] = field(default_factory=dict)
    fallback: str | None = None  # why the router fell back to its default, if it did
    cost_usd: float = 0.0
    kind: str = ""  # request type, the feedback learner's context

    def header(self) -> str:
        """The ``x-thrifty-route`` header value."""
        parts = [f"policy={self.policy}", f"model={self.tier}"]
        if self.score is not None:
            parts.append(f"score={self.score:.2f}")
        parts.append(f"escalations={self.escalations}")
        if self.fallback:
            parts.append("fallback=1")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """A plain dict for the ledger row."""
        return {
            "router": self.router,
            "policy": self.policy,
            "tier": self.tier,
            "model": self.model,
            "score": None if self.score is None else round(self.score, 4),
            "escalations": self.escalations,
            "tried": list(self.tried),
            "features": {k: round(v, 4) for k, v in self.features.items()},
            "fallback": self.fallback,
            "cost_usd": self.cost_usd,
            "kind": self.kind,
        }
