"""How a balancer picks one of the deployments that can take a request.

Each strategy is a function of the candidates (never empty) and the request.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

from ..types import ChatRequest, message_text
from .member import Member
from .settings import AffinitySettings

Strategy = Callable[[Sequence[Member], ChatRequest], Member]


class RoundRobin:
    def __init__(self) -> None:
        self.turn = 0

    def __call__(self, candidates: Sequence[Member], request: ChatRequest) -> Member:
        self.turn += 1
        return candidates[self.turn % len(candidates)]


class LeastOutstanding:
    """Fewest requests in flight per unit of weight; ties broken at random."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def __call__(self, candidates: Sequence[Member], request: ChatRequest) -> Member:
        return least_loaded(candidates, self.rng)


def least_loaded(candidates: Sequence[Member], rng: random.Random) -> Member:
    def load(m: Member) -> float:
        return m.outstanding / m.deployment.weight

    best = min(load(m) for m in candidates)
    return rng.choice([m for m in candidates if load(m) == best])


class PowerOfTwo:
    """Two candidates at random; the one with lower EWMA latency x (outstanding + 1).

    A member without latency samples yet scores zero, so it gets tried; an idle
    member's EWMA fades, so it gets tried again.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def __call__(self, candidates: Sequence[Member], request: ChatRequest) -> Member:
        if len(candidates) == 1:
            return candidates[0]
        a, b = self.rng.sample(list(candidates), 2)
        return a if score(a) <= score(b) else b


def score(member: Member) -> float:
    latency = member.ewma.current() or 0.0
    return latency * (member.outstanding + 1) / member.deployment.weight


class WeightedRandom:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def __call__(self, candidates: Sequence[Member], request: ChatRequest) -> Member:
        weights = [m.deployment.weight for m in candidates]
        return self.rng.choices(list(candidates), weights=weights)[0]


class Affinity:
    """Same session or same long prompt prefix -> same replica (its KV cache is warm).

    The key is the ``session_id`` option when given, else the first
    ``prefix_chars`` characters of every message but the newest (a shared
    system prompt, few-shot examples, a document being asked about).

    Rendezvous hashing picks the replica, so losing one moves only its keys.
    When the sticky replica has ``balance_abs`` more requests in flight than
    the least loaded one and ``balance_rel`` times as many, the request goes to
    the least loaded instead, so one replica never drowns (SGLang's router
    balances the same way).
    """

    def __init__(self, settings: AffinitySettings, rng: random.Random) -> None:
        self.settings = settings
        self.rng = rng
        self.sticky = 0
        self.spilled = 0

    def key(self, request: ChatRequest) -> str | None:
        options = request.options
        session = options.get("session_id") or options.get("session-id") or options.get("session")
        if isinstance(session, str) and session:
            return "s:" + session
        # Everything before the newest message: the part later requests share.
        shared = request.messages[:-1] or request.messages
        text = "".join(f"{m.get('role')}:{message_text(m)}\n" for m in shared)
        if len(text) < self.settings.min_prefix_chars:
            return None
        return "p:" + text[: self.settings.prefix_chars]

    def __call__(self, candidates: Sequence[Member], request: ChatRequest) -> Member:
        key = self.key(request)
        least = least_loaded(candidates, self.rng)
        if key is None:
            return least
        chosen = max(candidates, key=lambda m: _rank(key, m.name))
        gap = chosen.outstanding - least.outstanding
        if (
            gap >= self.settings.balance_abs
            and chosen.outstanding > self.settings.balance_rel * least.outstanding
        ):
            self.spilled += 1
            return least
        self.sticky += 1
        return chosen


def _rank(key: str, name: str) -> int:
    digest = hashlib.blake2b(f"{key}\x00{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def make_strategy(name: str, affinity: AffinitySettings, rng: random.Random) -> Strategy:
    if name == "round_robin":
        return RoundRobin()
    if name == "p2c":
        return PowerOfTwo(rng)
    if name == "weighted":
        return WeightedRandom(rng)
    if name == "affinity":
        return Affinity(affinity, rng)
    return LeastOutstanding(rng)
